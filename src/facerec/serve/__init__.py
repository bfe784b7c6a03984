"""Using trained models: represent / verify / enroll / identify, and the gallery store they use."""

from facerec.serve.recognizer import FaceRecognizer, Identification, Verification
from facerec.serve.store import GalleryStore, open_store

__all__ = ["FaceRecognizer", "GalleryStore", "Identification", "Verification", "open_store"]
