"""Image-space deblurring baselines: deblur every training photo with a 2D network, then train plain 3DGS on them.

- asn: the analysis-synthesis network pair (Kaufman and Fattal, CVPR 2020), an analysis network that estimates a
  photo's blur kernel with cross-correlation layers and a synthesis network that deblurs it guided by that kernel
  (asn.py, networks.py), trained once on pairs blurred by the generator's own blur models (data.py, kernels.py) and
  cached.
- blur2blur: Blur2Blur (Pham et al., CVPR 2024), a converter trained per scene without sharp photos that turns the
  scene's blur into the blur that deblurrer knows, which then deblurs the converted photos (blur2blur.py).

    python -m baselines.image.deblur -s data/scene -o output/scene_asn --method asn|blur2blur
    python train.py -s output/scene_asn ...

deblur.deblur_scene is the library entry point.
"""
