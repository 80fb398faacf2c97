"""NNSegLib.util.json_files: every way a JSON artefact can be wrong ends in one clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from NNSegLib.planning.plans import Plans
from NNSegLib.util.errors import NNSegError
from NNSegLib.util.json_files import load_document, read_json


def test_reads_objects_and_lists(tmp_path: Path):
    (tmp_path / "a.json").write_text('{"x": [1, 2]}')
    (tmp_path / "b.json").write_text("[1]")
    assert read_json(tmp_path / "a.json", expect=dict) == {"x": [1, 2]}
    assert read_json(tmp_path / "b.json", expect=list) == [1]


@pytest.mark.parametrize("content, message", [
    (None, r"a\.json: missing; run `nnseg plan` first"),
    ("{not json", r"a\.json: not valid JSON \(line 1, column 2: .*\); run `nnseg plan` again"),
    (b"\xff\xfe", r"a\.json: not UTF-8 text"),
    ("[1, 2]", r"a\.json: expected a JSON object at the top level"),
])
def test_errors_name_the_file_the_problem_and_the_command(tmp_path: Path, content, message):
    path = tmp_path / "a.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(NNSegError, match=message):
        read_json(path, expect=dict, hint="nnseg plan")


def test_folder_and_unreadable_file(tmp_path: Path):
    with pytest.raises(NNSegError, match="is a folder"):
        read_json(tmp_path)
    path = tmp_path / "secret.json"
    path.write_text("{}")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):   # running as root: permissions do not bite
            pytest.skip("permission bits are not enforced for this user")
        with pytest.raises(NNSegError, match="permission denied"):
            read_json(path)
    finally:
        path.chmod(0o644)


def test_load_document_names_what_the_file_should_be(tmp_path: Path):
    path = tmp_path / "plans.json"
    path.write_text('{"version": 1}')
    with pytest.raises(NNSegError, match=r"plans\.json: not a valid NNSeg plans file .*"
                                         r"run `nnseg plan` again"):
        Plans.load(path)
    with pytest.raises(NNSegError, match=r"not a valid thing \(missing key 'k'\)"):
        load_document(path, lambda d: d["k"], what="thing")
