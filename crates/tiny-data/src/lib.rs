//! tiny-data: image-folder datasets and a parallel DataLoader (filled in by the tiny-data issue).
