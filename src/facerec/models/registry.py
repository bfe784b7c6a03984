from typing import Any

from torch import nn

from facerec.registry import Registry

BACKBONES: Registry[nn.Module] = Registry("backbone")
# Named recognition models ('default', 'dlib', ...): constructors taking `device`, returning a
# facerec.models.io.RecognitionModel. Registered in facerec.models.named.
MODELS: Registry[Any] = Registry("named model")
