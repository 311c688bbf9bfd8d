"""One object per model for its structure: prunable layers, coupled groups, output layers, GroupNorm multiples.

torch-pruning's dependency graph is built once per (module, input shape) and kept here, so describing a model,
previewing, planning and removing channels, measuring and scanning all read the same graph:

- :func:`graph_of` builds it for a module that must not change (a loaded model shared by the app's sessions): the
  graph is traced on a copy and only its findings (by layer name) are kept, cached with the module.
- :func:`live_graph` builds it on a module that will be pruned (a working copy): torch-pruning's graph stays bound
  to that module, and :meth:`ModelGraph.remove_channels` changes it in place, as often as needed (iterative
  schedules prune the same graph round after round). Its findings are cached with the module too, so
  :func:`graph_of` on the working copy (describing it, measuring the result) builds nothing more.

The cache holds no strong reference to a module: a module that is dropped takes its graph with it.

A model torch-pruning cannot trace still gets a graph: ``coupling`` then says why coupled channels are unknown,
and everything that needs them refuses with that reason instead of failing later.

Coupling is read from torch-pruning's groups by handler identity (``is_out_channel_pruning_fn``), as torch-pruning
does itself, never by handler names.
"""

from __future__ import annotations

import copy
import math
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from pruner_core.errors import SpecError
from pruner_core.graph.attention import Heads, find_attention
from pruner_core.graph.head_forms import open_heads
from pruner_core.graph.layers import evaluating, layer_lookup, prunable_layers
from pruner_core.io.inputs import example_input

_cache: weakref.WeakKeyDictionary[nn.Module, dict[tuple, ModelGraph]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _out_fn(tp, module: nn.Module):
    if isinstance(module, nn.Embedding):
        return tp.prune_embedding_out_channels
    return tp.prune_linear_out_channels if isinstance(module, nn.Linear) else tp.prune_conv_out_channels


@dataclass
class ModelGraph:
    """The structure of one module at one input shape.

    Attributes:
        names: prunable layers (Conv1d, Conv2d, Linear) in definition order.
        group_of: layer -> id shared by layers whose output channels are coupled (residual additions).
        outputs: layers whose outputs are the model's outputs (no layer reads them).
        coupling: ``None`` when torch-pruning traced the model, else why coupled channels are unknown.
        multiple_of: layer -> the number its kept channels must be a multiple of (a GroupNorm on them keeps its
            groups: channels go in whole groups' worth), for layers where that is more than 1.
        follows: layer -> the layers whose channels its own output channels are made of, for a layer that is not
            a unit of its own: a depthwise convolution over a concatenation (its channel i is branch k's channel j).
            Its channels go when those layers' channels go; it is never pruned by itself.
        heads: the layer that makes an attention's heads (a fused ``qkv``, or ``q`` with its coupled ``k`` and ``v``)
            -> its :class:`~pruner_core.graph.attention.Heads`: its output channels go in whole heads, and the
            module's head count follows.
        attention: layer -> (role, attention module) where attention rules out its channels: ``"stream"`` for the
            embedding dimension an attention block reads and reshapes by, ``"mha"`` for a layer inside an
            ``nn.MultiheadAttention`` that stays one (cross-attention, kdim/vdim), ``"fixed"`` for a ``qkv`` whose
            attention's forward cannot lose a head; ``"heads"`` marks an in-projection whose heads go once the
            attention is opened (:func:`~pruner_core.graph.head_forms.open_heads`).
        form: for a graph of a module that must not change, the traced copy when attention was opened in it (its
            layers are the ones channel pruning plans on: :meth:`channel_form`); None when the module itself is.
    """

    names: list[str]
    group_of: dict[str, int]
    outputs: set[str]
    coupling: str | None = None
    input_shape: tuple[int, ...] = ()
    multiple_of: dict[str, int] = field(default_factory=dict)
    follows: dict[str, tuple[str, ...]] = field(default_factory=dict)
    heads: dict[str, Heads] = field(default_factory=dict)
    attention: dict[str, tuple[str, str]] = field(default_factory=dict)
    form: nn.Module | None = field(default=None, repr=False, compare=False)  # the opened copy (see channel_form)
    _module: weakref.ref | None = field(default=None, repr=False, compare=False)  # the module it describes
    _dep: object | None = field(default=None, repr=False, compare=False)  # torch-pruning's graph (live graphs only)

    def channel_form(self) -> nn.Module:
        """The module as channel pruning sees it: the described module, or its copy with attention opened for head
        removal (the same layer names, the same outputs). Score and plan on this one; never change it."""
        return self.form if self.form is not None else self.module

    @property
    def traced(self) -> bool:
        """True when torch-pruning's dependency graph could be built (coupled channels are known)."""
        return self.coupling is None

    def groups(self) -> dict[int, list[str]]:
        """Group id -> member layers in definition order (every group, single layers included)."""
        members: dict[int, list[str]] = {}
        for name in self.names:
            members.setdefault(self.group_of[name], []).append(name)
        return members

    def members(self, name: str) -> list[str]:
        """The layers coupled with ``name`` (itself first among them in definition order)."""
        return self.groups()[self.group_of[name]]

    def require_coupling(self) -> None:
        """Raise :class:`SpecError` with the reason when coupled channels are unknown."""
        if self.coupling is not None:
            raise SpecError(
                f"{self.coupling}, so coupled channels are unknown; channels cannot be removed (use a mask granularity"
                " such as unstructured or kernel)"
            )

    @property
    def module(self) -> nn.Module:
        module = self._module() if self._module is not None else None
        if module is None:
            raise SpecError("the module this graph describes is gone")
        return module

    # --- live graphs ----------------------------------------------------------------------------------------

    def bound_to(self, module: nn.Module) -> bool:
        """True for a live graph of ``module`` (one that can change it)."""
        return self._dep is not None and self._module is not None and self._module() is module

    def _live(self):
        if self._dep is None:
            raise SpecError("this model graph is not bound to a working copy; build it with live_graph() to change it")
        return self._dep

    def consumers(self, name: str, channels: Sequence[int]) -> dict[str, list[int]]:
        """The prunable layers that read ``name``'s output ``channels``, with the input indices they read them at.

        A live graph only. Layers coupled with ``name`` (residual partners) are not consumers.
        """
        dep_graph = self._live()
        modules = dict(self.module.named_modules())
        name_of = {id(m): n for n, m in modules.items()}
        root = modules[name]
        import torch_pruning as tp

        found: dict[str, list[int]] = {}
        for dep, idxs in dep_graph.get_pruning_group(root, _out_fn(tp, root), idxs=list(channels)):
            member = name_of.get(id(dep.target.module))
            if member not in self.group_of or dep_graph.is_out_channel_pruning_fn(dep.handler):
                continue  # not a prunable layer, or a coupled partner (its outputs go with the root's)
            if dep_graph.is_in_channel_pruning_fn(dep.handler):
                found[member] = sorted({int(i) for i in idxs})
        return found

    def remove_channels(self, plan: list[dict]) -> None:
        """Physically remove each plan entry's output channels (and all that is coupled to them) from the bound module.

        After each entry the module runs one forward pass on a sample (zeros of the input shape) and must still
        return what it returned before, so a removal that breaks the model is named here, not in fine-tuning later.

        Args:
            plan: ``[{"layer": name, "channels": [int, ...]}, ...]``, indices into the module as it is now.

        Raises:
            SpecError: "pruning layer X broke the model's forward: ..." (the module is then left part-pruned: discard
                it, as the pipeline does with its working copy).
        """
        dep_graph = self._live()
        import torch_pruning as tp

        module = self.module
        modules = dict(module.named_modules())
        example = example_input(module, self.input_shape)
        with evaluating(module):
            with torch.no_grad():
                before = _output_shape(module, example)
            for entry in plan:
                layer = modules[entry["layer"]]
                with torch.enable_grad():  # torch-pruning traces with autograd
                    dep_graph.get_pruning_group(layer, _out_fn(tp, layer), idxs=sorted(set(entry["channels"]))).prune()
                if entry["layer"] in self.heads:  # whole heads went: the attention's head count follows
                    heads = self.heads[entry["layer"]]
                    self.heads[entry["layer"]] = heads.after_removal(modules[heads.attention], layer)
                try:
                    with torch.no_grad():
                        after = _output_shape(module, example)
                except Exception as e:  # the user's forward may raise anything once its layers have shrunk
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
                    raise SpecError(f"pruning layer '{entry['layer']}' broke the model's forward: {type(e).__name__}: "
                                    f"{first}") from e
                if after != before:
                    raise SpecError(f"pruning layer '{entry['layer']}' broke the model's forward: its output changed "
                                    f"from {before} to {after}")

    def head_blocks(self, name: str) -> list[list[int]] | None:
        """The output channels of a layer that makes attention heads, one list per head; else None."""
        return self.heads[name].blocks() if name in self.heads else None


def _output_shape(module: nn.Module, example: torch.Tensor):
    out = module(example)
    return tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__


def _build(module: nn.Module, example: torch.Tensor, live: bool, eager: bool) -> ModelGraph:
    """Trace ``module`` with torch-pruning (on a copy unless ``live``) and read its groups by handler identity."""
    target = module if live or not eager else copy.deepcopy(module)
    opened = open_heads(target, example) if eager else {}
    names = [name for name, _, _ in prunable_layers(target)]
    shape = tuple(example.shape[1:])
    heads, roles = find_attention(target, names)
    attention = {layer: role for layer, role in roles.items() if role[0] != "reads"}
    for unit, found in heads.items():  # opened here: an in-projection that is a layer of the copy (see head_forms)
        if opened.get(found.attention, "") is None:
            attention[unit] = ("heads", found.attention)
    form = target if target is not module and any(why is None for why in opened.values()) else None
    fallback = ModelGraph(names, {n: i for i, n in enumerate(names)}, {names[-1]} if names else set(), None, shape,
                          heads=heads, attention=attention, form=form, _module=weakref.ref(module))
    if not eager:
        fallback.coupling = "TorchScript / torch.export programs cannot have channels physically removed (mask only)"
        return fallback
    if not names:
        return fallback
    import torch_pruning as tp

    try:
        with evaluating(target), torch.enable_grad():  # torch-pruning traces with autograd
            dep_graph = tp.DependencyGraph().build_dependency(target, example_inputs=example)
    except Exception as e:  # torch-pruning cannot trace every model: then channel coupling is unknown
        fallback.coupling = f"torch-pruning could not trace the model ({type(e).__name__}: {str(e)[:200]})"
        return fallback
    by_name = layer_lookup(target)  # recurrent and attention matrices too: torch-pruning has no node for them
    name_of = {id(m): n for n, m in by_name.items()}
    prunable = set(names)
    group_of: dict[str, int] = {}
    outputs: set[str] = set()
    multiple_of: dict[str, int] = {}
    follows: dict[str, set[str]] = {}
    width = {name: int(by_name[name].weight.shape[0]) for name in names}
    readers = {layer: attn for layer, (role, attn) in roles.items() if role in ("reads", "fixed")}  # q, k, v
    for name in names:
        layer = by_name[name]
        if dep_graph.module2node.get(layer) is None:  # forward() never calls it: nothing is coupled to it
            group_of.setdefault(name, len(set(group_of.values())))
            continue
        members, consumed = [name], False
        for dep, idxs in dep_graph.get_pruning_group(layer, _out_fn(tp, layer), idxs=[0]):
            if isinstance(dep.target.module, nn.GroupNorm):  # torch-pruning keeps num_groups: keep whole multiples
                multiple_of[name] = math.lcm(multiple_of.get(name, 1), dep.target.module.num_groups)
            member = name_of.get(id(dep.target.module))
            reader = readers.get(member) if dep_graph.is_in_channel_pruning_fn(dep.handler) else None
            if reader is not None or isinstance(dep.target.module, nn.MultiheadAttention):
                attention.setdefault(name, ("stream", reader or member))
            if member not in prunable or member == name:
                reads = dep_graph.is_in_channel_pruning_fn(dep.handler) and not dep_graph.is_out_channel_pruning_fn(
                    dep.handler)
                if reads and not type(dep.target.module).__module__.startswith("torch_pruning"):
                    consumed = True  # read by a layer of the model that is no prunable layer (an LSTM, an MHA)
                continue
            if dep_graph.is_out_channel_pruning_fn(dep.handler):
                if width[member] == width[name] and [int(i) for i in idxs] == [0]:
                    members.append(member)  # channel i is channel i: scored and removed together
                elif width[member] > width[name]:
                    follows.setdefault(member, set()).add(name)  # a depthwise layer over a concatenation
                else:
                    follows.setdefault(name, set()).add(member)  # this one is, over ``member``'s branch
            elif dep_graph.is_in_channel_pruning_fn(dep.handler):
                consumed = True
        if not consumed:  # no layer reads these channels: they reach the model's output
            outputs.add(name)
        if name not in group_of:
            group_of[name] = gid = len(set(group_of.values()))
            for member in members[1:]:
                if member not in follows:
                    group_of.setdefault(member, gid)
    streams = {group_of[n]: attention[n] for n in names if attention.get(n, ("",))[0] == "stream"}
    for name in names:  # a group moves together: every member of a stream group is the stream
        if group_of[name] in streams:
            attention.setdefault(name, streams[group_of[name]])
    for name in follows:  # its own group, pruned only through the layers it follows
        if name in group_of and any(group_of[other] == group_of[name] for other in names if other != name):
            group_of[name] = max(group_of.values()) + 1
    return ModelGraph(names, group_of, outputs, None, shape, multiple_of,
                      {name: tuple(sorted(by, key=names.index)) for name, by in follows.items()}, heads, attention,
                      form, weakref.ref(module), dep_graph if live else None)


def graph_of(module: nn.Module, input_shape: Sequence[int], *, eager: bool = True) -> ModelGraph:
    """The graph of a module that must not change, built once per (module, input shape) and cached with it.

    Works on a copy (torch-pruning runs hooks during its trace). Safe to call from several threads.

    Args:
        module: the model.
        input_shape: one sample's shape, e.g. ``(1, 28, 28)``.
        eager: False for TorchScript / torch.export programs (nothing is traced; ``coupling`` says why).
    """
    key = tuple(input_shape)
    with _lock:
        known = _cache.get(module, {}).get(key)
        if known is None:
            known = _build(module, example_input(module, key), live=False, eager=eager)
            _cache.setdefault(module, {})[key] = known
    return known


def live_graph(module: nn.Module, input_shape: Sequence[int]) -> ModelGraph:
    """A graph bound to ``module``, a working copy that will be pruned (see :meth:`ModelGraph.remove_channels`).

    Hold on to the result for the surgery; its findings are cached with the module, so :func:`graph_of` on the
    working copy (describing it, measuring the result) reuses them and builds nothing.
    """
    graph = _build(module, example_input(module, input_shape), live=True, eager=True)
    with _lock:
        _cache.setdefault(module, {})[tuple(input_shape)] = replace(graph, _dep=None)  # no strong reference kept
    return graph
