"""`comfyui`: keyframes and clips rendered by a user's ComfyUI workflow on a ComfyUI server.

workflow.py reads the workflow and finds where fanren's inputs go; client.py speaks ComfyUI's
protocol; engine.py is the image and the video engine. See docs/comfyui.md.
"""

from .engine import ComfyUIImageEngine, ComfyUIVideoEngine

__all__ = ["ComfyUIImageEngine", "ComfyUIVideoEngine"]
