"""torch's own generic test inputs for its recurrent modules, run against rnncore's.

For every ``ModuleInput`` that ``torch.testing._internal.common_modules.module_db`` gives
torch.nn.RNN, GRU, LSTM (packed-sequence variants included), RNNCell, GRUCell and LSTMCell,
both modules are built from the same constructor arguments and ours loads torch's state
dict; outputs, the gradients of every input and parameter (float64, within 1e-10) and
torch's unbatched reference (``reference_fn`` applied to our module) must agree. Every
``ErrorModuleInput`` must raise torch's exception type with a message matching torch's
regex. Layers run under each engine; cells have none.

``python tests/test_torch_conformance.py`` prints the pass count, N of M, per engine.
"""
from __future__ import annotations

import copy
import inspect
import sys
import typing
import warnings

import pytest
import torch
from torch.testing._internal.common_modules import ModuleErrorEnum, module_db

import rnncore
from rnncore.kinds import ENGINES

LAYERS = ("RNN", "GRU", "LSTM")
CELLS = ("RNNCell", "GRUCell", "LSTMCell")
INFOS = {m.module_cls.__name__: m for m in module_db
         if m.module_cls in {getattr(torch.nn, n) for n in LAYERS + CELLS}}
TOL = dict(rtol=1e-10, atol=1e-10)


def _engines(name):
    return ENGINES if name in LAYERS else (None,)


def _cases(kind):
    """{(class name, index): ModuleInput or ErrorModuleInput} from torch's input functions."""
    cases = {}
    for name, info in INFOS.items():
        if kind == "forward":
            inputs = info.module_inputs_func(info, device="cpu", dtype=torch.float64,
                                             requires_grad=True, training=True,
                                             with_packed_sequence=True)
        else:
            inputs = info.module_error_inputs_func(info, device="cpu", dtype=torch.float32,
                                                   requires_grad=False, training=True)
        cases.update({(name, i): case for i, case in enumerate(inputs)})
    return cases


FORWARD, ERRORS = _cases("forward"), _cases("error")


def _params(cases):
    return [pytest.param(name, i, engine, id=f"{name}-{i}-{engine or 'cell'}")
            for name, i in cases for engine in _engines(name)]


def _ours(name, engine, args, kwargs):
    extra = {} if engine is None else {"engine": engine}
    return getattr(rnncore, name)(*args, **kwargs, **extra)


def _tensors(obj) -> list[torch.Tensor]:
    """The tensors in a nest of tuples/lists (a PackedSequence is a tuple)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item)]
    return []


def _run(module, forward_input):
    """Forward on a copy of the inputs, then the gradients of a loss touching every float
    output with respect to every input that requires grad and every parameter."""
    args, kwargs = copy.deepcopy((forward_input.args, forward_input.kwargs))
    leaves = [t for t in _tensors((args, list(kwargs.values()))) if t.requires_grad]
    outputs = _tensors(module(*args, **kwargs))
    loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum()
               for o in outputs if o.is_floating_point())
    grads = torch.autograd.grad(loss, leaves + list(module.parameters()), allow_unused=True)
    return outputs, list(grads)


def check_forward(name, index, engine):
    case = FORWARD[(name, index)]
    ctor = case.constructor_input
    torch.manual_seed(0)
    ref = getattr(torch.nn, name)(*ctor.args, **ctor.kwargs).double()
    ours = _ours(name, engine, ctor.args, ctor.kwargs).double()
    ours.load_state_dict(ref.state_dict())
    (want, want_grads), (got, got_grads) = _run(ref, case.forward_input), _run(ours, case.forward_input)
    assert len(got) == len(want)
    for a, b in zip(got + got_grads, want + want_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **TOL)
    args = case.forward_input.args
    if case.reference_fn is not None and not isinstance(args[0], tuple):
        unbatched = _tensors(ours(*copy.deepcopy(args)))
        batched = _tensors(case.reference_fn(ours, *copy.deepcopy(args)))
        for a, b in zip(unbatched, batched):
            torch.testing.assert_close(a, b, **TOL)


def check_error(name, index, engine):
    case = ERRORS[(name, index)]
    inp = case.module_error_input
    ctor = inp.constructor_input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case.error_on == ModuleErrorEnum.CONSTRUCTION_ERROR:
            with pytest.raises(case.error_type, match=case.error_regex):
                _ours(name, engine, ctor.args, ctor.kwargs)
        else:
            module = _ours(name, engine, ctor.args, ctor.kwargs)
            with pytest.raises(case.error_type, match=case.error_regex):
                module(*inp.forward_input.args, **inp.forward_input.kwargs)


@pytest.mark.parametrize("name,index,engine", _params(FORWARD))
def test_forward_matches_torch(name, index, engine):
    check_forward(name, index, engine)


@pytest.mark.parametrize("name,index,engine", _params(ERRORS))
def test_error_matches_torch(name, index, engine):
    check_error(name, index, engine)


def _torch_signature(cls):
    """torch's documented constructor signature: the first ``typing.overload`` of the
    layers' ``__init__(*args, **kwargs)``, the plain ``__init__`` of the cells."""
    overloads = typing.get_overloads(cls.__init__)
    return inspect.signature(overloads[0] if overloads else cls.__init__)


@pytest.mark.parametrize("name", LAYERS + CELLS)
def test_constructor_signature_matches_torch(name):
    """Same parameter names, order, kinds and defaults as torch.nn; the layers add one
    keyword-only ``engine``."""
    ours = dict(inspect.signature(getattr(rnncore, name).__init__).parameters)
    if name in LAYERS:
        engine = ours.pop("engine")
        assert engine.kind is inspect.Parameter.KEYWORD_ONLY and engine.default == "bptt"
    want = _torch_signature(getattr(torch.nn, name)).parameters.values()
    assert [(p.name, p.kind, p.default) for p in ours.values()] == \
        [(p.name, p.kind, p.default) for p in want]


def main() -> None:
    """Print how many of torch's cases pass, per engine (cells once: they have no engine)."""
    def passes(check, cases, engine):
        ok = 0
        for name, i in cases:
            try:
                check(name, i, engine)
                ok += 1
            except (Exception, pytest.fail.Exception):   # a failing case, whatever it raised
                pass
        return ok, len(cases)

    layer = lambda cases: [k for k in cases if k[0] in LAYERS]   # noqa: E731
    cell = lambda cases: [k for k in cases if k[0] in CELLS]     # noqa: E731
    rows = [(engine, [passes(check_forward, layer(FORWARD), engine),
                      passes(check_error, layer(ERRORS), engine)]) for engine in ENGINES]
    rows.append(("cells", [passes(check_forward, cell(FORWARD), None),
                           passes(check_error, cell(ERRORS), None)]))
    total = [0, 0]
    for label, ((fo, fm), (eo, em)) in rows:
        total = [total[0] + fo + eo, total[1] + fm + em]
        print(f"{label:9s} {fo + eo} of {fm + em} (forward {fo} of {fm}, errors {eo} of {em})")
    print(f"{'total':9s} {total[0]} of {total[1]}")


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    sys.exit(main())
