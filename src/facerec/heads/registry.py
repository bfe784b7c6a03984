from torch import nn

from facerec.registry import Registry

HEADS: Registry[nn.Module] = Registry("head")
