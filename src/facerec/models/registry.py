from torch import nn

from facerec.registry import Registry

BACKBONES: Registry[nn.Module] = Registry("backbone")
