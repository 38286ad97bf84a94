"""NeRF-based deblurring baselines, trained and scored like our Gaussian method.

- nerf: vanilla NeRF (positional encoding, coarse and fine MLPs, hierarchical sampling; NDC rays for
  forward-facing scenes).
- deblurnerf: Deblur-NeRF with its deformable sparse kernel (kernels.DeformableSparseKernel).
- dpnerf: DP-NeRF's rigid blurring kernel with adaptively proposed weights (kernels.RigidBlurKernel).
- dynamic: the rigid kernel scaled per pixel by a blur extent predicted from the blurry image by a small CNN
  (kernels.DynamicBlurKernel).

The kernels model the blur of the training photos only: test views render the sharp rays.

    python -m baselines.nerf.train -s data/scene -m output/name --method nerf|deblurnerf|dpnerf|dynamic
    python -m baselines.nerf.benchmark data/scene [data/scene2 ...] --out output/nerf_bench
"""
