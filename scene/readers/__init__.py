"""One reader per scene layout (colmap, deblur_nerf, nerf_synthetic) and what they share (views); the dispatcher
that picks one for a folder is scene.dataset_readers.load_scene_info."""
