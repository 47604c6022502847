"""The MXNet image's model server on bad input, over real HTTP, in the MXNet environment:
a malformed request is a 400 with the reason, never a 500."""

from __future__ import annotations

import io
import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from mxnet_support import model_server
from serving_support import Server

pytestmark = pytest.mark.mxnet

# 4 inputs, 2 outputs, every weight 1 and bias 0: each output is the row's sum.
EXPORT = """
    import sys
    import mxnet as mx
    from mxnet import gluon

    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(2, in_units=4, bias_initializer="zeros"))
    net.initialize(mx.init.One())
    net.hybridize()
    net(mx.nd.ones((1, 4)))
    net.export(sys.argv[1] + "/model")
"""


def _infer(server: Server, datatype: str, data: str, shape: str = "[1, 4]") -> tuple[int, str]:
    # Written by hand: some values are what a JSON encoder would refuse to produce.
    body = (
        f'{{"inputs": [{{"name": "x", "shape": {shape}, "datatype": "{datatype}", '
        f'"data": {data}}}]}}'
    )
    response = server.post("/v2/models/model/infer", body, **{"Content-Type": "application/json"})
    return response.status_code, response.text


def test_bad_requests_are_400_with_the_reason(tmp_path: Path, mxnet_env: dict[str, str]) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    export = [mxnet_env["KUBEMAKER_MXNET_PYTHON"], "-c", textwrap.dedent(EXPORT), str(model_dir)]
    subprocess.run(export, env=mxnet_env, check=True, timeout=120)

    with model_server(model_dir, mxnet_env, tmp_path) as server:
        # Open Inference Protocol: numbers of any datatype go to the network...
        status, text = _infer(server, "FP32", "[1, 2, 3, 4]")
        assert status == 200, text
        assert json.loads(text)["outputs"][0]["data"] == [10.0, 10.0]
        assert _infer(server, "INT8", "[1, 2, 3, 127]")[0] == 200
        # ...strings do not, nor integers the datatype cannot hold (numpy 1, this
        # environment's, would wrap 300 around to 44 without a word).
        status, text = _infer(server, "BYTES", '["a", "b", "c", "d"]')
        assert status == 400
        assert json.loads(text)["error"] == (
            "input 'x' is BYTES: this MXNet model takes numbers (FP*, INT*, UINT* or BOOL)"
        )
        status, text = _infer(server, "INT8", "[1, 2, 3, 300]")
        assert status == 400
        assert "inputs[0] ('x').data has a value out of range for INT8 (-128 to 127): 300" in text
        status, text = _infer(server, "FP32", "[1, 2, 3]", shape="[1, 3]")
        assert status == 400 and "the network rejected an input of shape (1, 3)" in text

        # /invocations with the default input_fn.
        npz = io.BytesIO()
        np.savez(npz, a=np.ones(4))
        for body, content_type, message in [
            (b"[" * 100_000, "application/json", "nested too deeply"),
            (npz.getvalue(), "application/x-npy", "not an .npz archive"),
            (b"1,2,3,x\n", "text/csv", "as numbers"),
        ]:
            response = server.post("/invocations", body, **{"Content-Type": content_type})
            assert response.status_code == 400, (content_type, response.text)
            assert message in response.text
        response = server.post("/invocations", b"1,2,3,4\n", **{"Content-Type": "text/csv"})
        assert response.json() == [[10.0, 10.0]]
