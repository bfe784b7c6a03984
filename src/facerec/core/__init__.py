"""The lowest layer: image geometry and decoding, files, devices, plots; imports no other facerec package."""
