"""The packaged jinja2 prompt templates (installed as the package `fanren.templates`).

Copy one into a drama's own templates/ folder to override it for that drama.
"""
