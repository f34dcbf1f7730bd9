# The embedding loop of bench/consistency_bench.py inlined (the device receives the main checkout,
# not this branch): the same models, preprocessing and crops; PNG decode and JSON writing left out.
# Run as it was: python consistency_inline.py > consistency.jsonl
import torch,time,json,os,numpy as np,transformers as T
from PIL import Image as I,ImageFilter as F
D='cuda';S=16;print(torch.__version__,T.__version__,torch.cuda.get_device_name())
V=T.Dinov2Config;C={'dinov2-small':V(hidden_size=384,num_attention_heads=6,image_size=518,layerscale_value=1.0),'dinov2-base':V(image_size=518,layerscale_value=1.0),'clip-vit-large-patch14':T.CLIPVisionConfig(hidden_size=1024,intermediate_size=4096,projection_dim=768,num_hidden_layers=24,num_attention_heads=16,patch_size=14,hidden_act='quick_gelu')}
B=getattr(T,'BitImageProcessorPil',T.BitImageProcessor);P=getattr(T,'CLIPImageProcessorPil',T.CLIPImageProcessor)
r=np.random.default_rng(0)
K=[I.fromarray(r.integers(0,256,(90,160,3),dtype=np.uint8)).resize((1280,720),I.BICUBIC).filter(F.GaussianBlur(4)) for _ in range(S)]
y=torch.cuda.synchronize
for n,c in C.items():
 d=c.model_type=='dinov2';t=time.perf_counter()
 with torch.device(D):m=(T.Dinov2Model if d else T.CLIPVisionModelWithProjection)(c).eval()
 pr=B(size={'shortest_edge':256},crop_size={'height':224,'width':224},image_mean=[.485,.456,.406],image_std=[.229,.224,.225]) if d else P()
 y();ld=time.perf_counter()-t
 def e(ims):
  x=pr(images=ims,return_tensors='pt')['pixel_values'].to(D);o=m(pixel_values=x)
  return torch.nn.functional.normalize((o.pooler_output if d else o.image_embeds).float(),dim=-1).cpu()
 for lay,k in (('one',1),('two',2),('batch16',0)):
  for _ in range(2):
   y();torch.cuda.reset_peak_memory_stats();t=time.perf_counter()
   with torch.inference_mode():
    if k==0:e(K)
    for f in (K if k else []):w=1280//k;e([f.crop((i*w,0,i*w+w,720)) for i in range(k)])
   y();s=time.perf_counter()-t
  print(json.dumps({'model':n,'layout':lay,'shots':S,'load_s':round(ld,2),'per_keyframe_s':round(s/S,4),'peak_gb':round(torch.cuda.max_memory_allocated()/2**30,2)}),flush=True)
