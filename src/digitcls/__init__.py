"""digitcls: MobileNetV3 on handwritten digits, trained with Lightning and configured with Hydra."""

__version__ = "0.1.0"
