"""Using trained models: represent / verify / enroll / identify, and the gallery they use."""

from facerec.serve.gallery import Gallery
from facerec.serve.recognizer import FaceRecognizer, Identification, Verification

__all__ = ["FaceRecognizer", "Gallery", "Identification", "Verification"]
