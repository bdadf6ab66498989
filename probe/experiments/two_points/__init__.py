"""Two-point representation dynamics and the effective theory's tests of universality.

Modules: `config` (the authors' settings table), `experiment` (train, record, fit per layer),
`universality` (every row in one table), `xor` (per-pair final distances on XOR),
`mnist_trajectory` (a '0' and a '1' during SGD on MNIST), `_report` (figures).
"""
