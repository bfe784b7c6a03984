"""Face detection, five landmarks and alignment to a template."""
