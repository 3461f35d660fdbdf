from minicaffe.testing.gradient_check import GradientChecker

__all__ = ["GradientChecker"]
