"""What ``torch.compile`` traces, for tests that check which ops a compiled forward holds."""

import torch
from torch._dynamo.backends.common import aot_autograd


def forward_graph(module, *inputs) -> str:
    """The forward graph (AOT autograd's, no code generation) that ``torch.compile(module, fullgraph=True)`` traces
    for ``module(*inputs)``, as text."""
    graphs = []

    def keep(graph_module, _):
        graphs.append(str(graph_module.graph))
        return graph_module
    torch._dynamo.reset()
    torch.compile(module, fullgraph=True, backend=aot_autograd(fw_compiler=keep))(*inputs)
    return graphs[0]
