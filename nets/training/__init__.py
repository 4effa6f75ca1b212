"""Training: feather rows and the split, augmentation, the trainer, TFLite export and the CLI of C3AE.py / C3AE_expand.py."""
