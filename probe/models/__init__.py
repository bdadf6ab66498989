"""Reference models for the probing experiments.

Small MNIST / 8x8-digits classifiers whose submodules have readable dotted names, so that
activation capture can address them by name (``layers.0``, ``acts.0``, ``conv1``, ``head``).
"""

from probe.models.gdln import GatedDLN, RoutingNetwork, routing_network
from probe.models.mnist import CNN, MLP
from probe.models.polynomial import ProductNet, SumNet, TwoBranchNet
from probe.models.sequence import RecurrentEncoder, SequenceClassifier
from probe.models.two_point import TwoPointMLP

__all__ = [
    "GatedDLN",
    "RoutingNetwork",
    "routing_network",
    "CNN",
    "MLP",
    "ProductNet",
    "RecurrentEncoder",
    "SequenceClassifier",
    "SumNet",
    "TwoBranchNet",
    "TwoPointMLP",
]
