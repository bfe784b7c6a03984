from facerec.heads.base import Head
from facerec.registry import Registry

HEADS: Registry[Head] = Registry("head")
