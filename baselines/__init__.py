"""Methods the Gaussian deblurring is compared with; see baselines/nerf for the NeRF-based ones."""
