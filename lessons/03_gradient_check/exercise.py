"""Lesson 03: gradient checking. Complete the two functions marked TODO.

Check your work:   python -m pytest lessons/03_gradient_check
Try it:            python lessons/03_gradient_check/exercise.py
"""
import numpy as np


def numeric_gradient(f, x: np.ndarray, h: float = 1e-2) -> np.ndarray:
    """Central-difference estimate of the gradient of the scalar f() with respect to x.

    `f` takes no argument: it reads `x` (and whatever else it needs) when called. Nudge
    each element of x IN PLACE by +h and -h, call f() each time, and estimate
    (f(x + h) - f(x - h)) / (2h). Restore the element before moving on, so that x is
    unchanged afterwards. Return a float64 array of x's shape.
    """
    raise NotImplementedError("TODO: lesson 03, numeric_gradient")


def gradients_agree(analytic, numeric, threshold: float = 1e-3) -> bool:
    """Caffe's test, element by element: |a - e| <= threshold * max(|a|, |e|, 1)."""
    raise NotImplementedError("TODO: lesson 03, gradients_agree")


if __name__ == "__main__":
    x = np.array([0.5, 1.0, 2.0])
    g = numeric_gradient(lambda: float(np.sum(x ** 3)), x)
    print("d/dx sum(x^3) ~", g, " exact:", 3 * x ** 2)
    print("agree:", gradients_agree(3 * x ** 2, g))
    print("a 10% error is caught:", not gradients_agree(1.1 * 3 * x ** 2, g))
