"""Vision-language encoder plugins (open_clip); the embedded mini-CLIP lives with synthfaces."""
