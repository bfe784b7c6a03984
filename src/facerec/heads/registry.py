from torch import nn

from facerec.registry import Registry

LOSSES: Registry[nn.Module] = Registry("head/loss")
