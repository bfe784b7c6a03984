"""Using trained models: one-line verify / represent / identify, and an on-disk gallery."""

from facerec.serve.api import FaceRecognizer
from facerec.serve.gallery import Gallery

__all__ = ["FaceRecognizer", "Gallery"]
