"""Image datasets and the steps that only make sense for images: resizing to a common resolution,
per-channel normalisation and random shift augmentation. Each dataset loader returns a
:class:`pipeline.data.domain.Domain` of float32 images (N, C, H, W) in [0, 1]."""
