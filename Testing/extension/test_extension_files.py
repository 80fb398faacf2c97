"""The Slicer extension's build files list every Python file and resource (no Slicer needed).

When someone adds a module to NNSegLib/ (or NNSeg/), the failure message below names the
files to add to NNSeg/CMakeLists.txt so Slicer installs them.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "NNSeg"
LIB_DIR = REPO / "NNSegLib"


def cmake_set(text: str, name: str) -> list[str]:
    """Values of ``set(NAME v1 v2 ...)`` in a CMake file (comments stripped)."""
    text = re.sub(r"#[^\n]*", "", text)
    m = re.search(rf"set\(\s*{re.escape(name)}\s+(.*?)\)", text, re.S)
    assert m, f"set({name} ...) not found"
    return m.group(1).split()


def cmake_value(text: str, name: str) -> str:
    m = re.search(rf'set\(\s*{re.escape(name)}\s+"([^"]*)"\s*\)', text)
    assert m, f"set({name} \"...\") not found"
    return m.group(1)


def module_cmake() -> str:
    return (MODULE_DIR / "CMakeLists.txt").read_text()


def test_every_nnseglib_python_file_is_listed():
    listed = set(cmake_set(module_cmake(), "NNSEGLIB_PYTHON_SCRIPTS"))
    present = {str(p.relative_to(LIB_DIR)) for p in LIB_DIR.rglob("*.py")}
    missing = sorted(present - listed)
    stale = sorted(listed - present)
    assert not missing, ("add to NNSEGLIB_PYTHON_SCRIPTS in NNSeg/CMakeLists.txt: "
                         + " ".join(missing))
    assert not stale, "listed in NNSeg/CMakeLists.txt but not in NNSegLib/: " + " ".join(stale)
    packages = [p for p in LIB_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    assert all((p / "__init__.py").is_file() for p in packages), (
        "every NNSegLib subfolder is a package (its __init__.py is installed too)")


def test_every_module_python_file_is_listed():
    text = module_cmake()
    listed = set()
    for s in cmake_set(text, "MODULE_PYTHON_SCRIPTS"):
        inner = re.fullmatch(r"\$\{(\w+)\}", s)  # another list, e.g. the panels package's
        listed |= set(cmake_set(text, inner.group(1))) if inner else {
            s.replace("${MODULE_NAME}", "NNSeg")}
    present = {str(p.relative_to(MODULE_DIR)) for p in MODULE_DIR.rglob("*.py")
               if "Testing" not in p.relative_to(MODULE_DIR).parts}
    missing = sorted(present - listed)
    assert not missing, "add to MODULE_PYTHON_SCRIPTS in NNSeg/CMakeLists.txt: " + " ".join(missing)
    assert all((MODULE_DIR / s).is_file() for s in listed), listed


def test_resources_exist_and_library_is_installed_next_to_the_module():
    text = module_cmake()
    resources = [s.replace("${MODULE_NAME}", "NNSeg")
                 for s in cmake_set(text, "MODULE_PYTHON_RESOURCES")]
    assert sorted(resources) == ["Resources/Icons/NNSeg.png", "Resources/UI/NNSeg.ui",
                                 "Resources/requirements.txt"]
    for r in resources:
        assert (MODULE_DIR / r).is_file(), f"NNSeg/{r} is listed but missing"
    for r in cmake_set(text, "NNSEGLIB_PYTHON_RESOURCES"):
        assert (LIB_DIR / r).is_file(), f"NNSegLib/{r} is listed but missing"
    assert "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    assert re.search(r"set\(NNSEGLIB_SOURCE_DIR \$\{CMAKE_CURRENT_SOURCE_DIR\}/\.\./NNSegLib\)",
                     text)
    destination = "DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/NNSegLib"
    assert destination in text
    if "add_subdirectory(Testing)" in text:
        assert (MODULE_DIR / "Testing" / "CMakeLists.txt").is_file()


def test_extension_metadata():
    text = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"^project\(NNSeg\)", text, re.M)
    assert cmake_value(text, "EXTENSION_CATEGORY") == "Segmentation"
    assert cmake_value(text, "EXTENSION_DEPENDS") == "PyTorch"
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert cmake_value(text, key).strip(), key
    assert cmake_value(text, "EXTENSION_ICONURL").endswith("Resources/Icons/NNSeg.png")
    order = ["find_package(Slicer ${NNSEG_SLICER_VERSION_MIN} REQUIRED)",
             "include(${Slicer_USE_FILE})",
             "add_subdirectory(NNSeg)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
             "include(${Slicer_EXTENSION_CPACK})"]
    positions = [text.find(s) for s in order]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), positions


def test_metadata_points_at_real_files_and_no_placeholder():
    """Homepage, icon and screenshots are files of this repository (no invented URLs);
    the README shows only pictures that exist, and a LICENSE matches pyproject."""
    text = (REPO / "CMakeLists.txt").read_text()
    paths = [cmake_value(text, "EXTENSION_HOMEPAGE").split("#")[0],
             cmake_value(text, "EXTENSION_ICONURL"),
             *cmake_value(text, "EXTENSION_SCREENSHOTURLS").split()]
    for path in paths:
        assert "://" not in path, f"{path}: no address is known for this project yet"
        assert (REPO / path).is_file(), path
    for shot in cmake_value(text, "EXTENSION_SCREENSHOTURLS").split():
        width, height = png_size(REPO / shot)
        assert width >= 600 and height >= 300, (shot, width, height)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert images and all((REPO / i).is_file() for i in images), images
    assert "placeholder" not in readme.lower()
    license_text = (REPO / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text()


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_icons():
    module_icon = MODULE_DIR / "Resources" / "Icons" / "NNSeg.png"
    ext_icon = REPO / "Resources" / "Icons" / "NNSeg.png"
    assert png_size(module_icon) == (128, 128)
    assert ext_icon.read_bytes() == module_icon.read_bytes()


def test_requirements_never_reinstall_slicer_packages():
    lines = [ln.split("#")[0].strip() for ln in
             (MODULE_DIR / "Resources" / "requirements.txt").read_text().splitlines()]
    names = {re.split(r"[<>=!~\[ ]", ln)[0].lower() for ln in lines if ln}
    assert names, "requirements.txt is empty"
    assert not names & {"numpy", "simpleitk", "vtk", "torch", "slicer", "slicer-core"}, names
    assert "psutil" in names  # NNSegLib.jobs.process needs it to cancel process trees


def test_extensions_index_entry_follows_slicer_catalog_schema():
    """Resources/ExtensionsIndex/NNSeg.json has the required fields of Slicer's catalog
    entry schema v1.0.1 and none it does not define, with their types."""
    import json

    entry = json.loads((REPO / "Resources" / "ExtensionsIndex" / "NNSeg.json").read_text())
    allowed = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str,
               "scm_type": str, "build_dependencies": list, "build_subdirectory": str,
               "enabled": bool, "tier": int}
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert set(entry) <= set(allowed)
    assert all(isinstance(entry[k], allowed[k]) for k in entry)
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert entry["scm_type"] in ("git", "local") and 1 <= entry["tier"] <= 5
    if entry["scm_type"] == "local":
        root = (REPO / "Resources" / "ExtensionsIndex" / entry["scm_url"]).resolve()
        assert (root / "CMakeLists.txt").is_file() and root == REPO.resolve()
    assert entry["build_dependencies"] == ["PyTorch"]  # EXTENSION_DEPENDS in CMakeLists.txt
