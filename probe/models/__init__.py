"""Reference models for the probing experiments.

Small MNIST / 8x8-digits classifiers whose submodules have readable dotted names, so that
activation capture can address them by name (``layers.0``, ``acts.0``, ``conv1``, ``head``).
"""

from probe.models.gdln import GatedDLN, GateError, RoutingNetwork, routing_network
from probe.models.mnist import CNN, MLP, InputShapeError, ModelConfigError
from probe.models.polynomial import ProductNet, SumNet, TwoBranchNet
from probe.models.sequence import RecurrentEncoder, SequenceClassifier
from probe.models.two_point import TwoPointMLP

__all__ = [
    "GateError",
    "GatedDLN",
    "RoutingNetwork",
    "routing_network",
    "CNN",
    "MLP",
    "InputShapeError",
    "ModelConfigError",
    "ProductNet",
    "RecurrentEncoder",
    "SequenceClassifier",
    "SumNet",
    "TwoBranchNet",
    "TwoPointMLP",
]
