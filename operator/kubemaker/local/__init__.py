"""Local mode: ``kubemaker local train|serve``, a TrainingJob or a model on this machine.

The same spec as on a cluster, through the same code: the operator's builders make the
agent's configuration, the data-plane agent prepares and finishes each host in-process
(under ``<workdir>/<job>/host-<i>`` instead of /opt/ml), and the algorithm runs as a
local process (built-in algorithms, script-mode frameworks) or in Docker (any other
image). See docs/local-mode.md.
"""
