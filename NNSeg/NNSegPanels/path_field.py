"""A path field the user may leave empty: ``Optional[pathlib.Path]`` bound to a ctkPathLineEdit.

Slicer's own connector (``ctkPathLineEditToPathConnector`` in ``slicer.parameterNodeWrapper``)
binds ``pathlib.Path``, whose unset value ``pathlib.Path()`` shows as ``.`` in the field. The
Segment panel's model and the Batch panel's input folder start unset, so the parameter node
declares them ``Optional[pathlib.Path]``: ``None`` shows an empty field and an empty field
reads as ``None``.

Importing this module registers the connector with the parameter node wrapper. Slicer has no
connector for an optional path, so no other module's binding changes; a module reload registers
it again, and the first registration keeps serving (the wrapper takes the first that fits).
"""

import pathlib
import typing

from slicer.parameterNodeWrapper import GuiConnector, parameterNodeGuiConnector

#: The parameter type this connector binds.
OptionalPath = typing.Optional[pathlib.Path]


def is_optional_path(datatype) -> bool:
    """``Optional[pathlib.Path]``, possibly ``Annotated``."""
    if typing.get_origin(datatype) is typing.Annotated:
        datatype = typing.get_args(datatype)[0]
    return (typing.get_origin(datatype) is typing.Union
            and set(typing.get_args(datatype)) == {pathlib.Path, type(None)})


@parameterNodeGuiConnector
class ctkPathLineEditToOptionalPathConnector(GuiConnector):
    """``Optional[pathlib.Path]`` <-> ``ctkPathLineEdit.currentPath`` (empty for ``None``)."""

    @staticmethod
    def canRepresent(widget, datatype) -> bool:
        import ctk

        return type(widget) is ctk.ctkPathLineEdit and is_optional_path(datatype)

    @staticmethod
    def create(widget, datatype):
        if ctkPathLineEditToOptionalPathConnector.canRepresent(widget, datatype):
            return ctkPathLineEditToOptionalPathConnector(widget)
        return None

    def __init__(self, widget) -> None:
        super().__init__()
        self._widget = widget

    def _connect(self) -> None:
        self._widget.currentPathChanged.connect(self.changed)

    def _disconnect(self) -> None:
        self._widget.currentPathChanged.disconnect(self.changed)

    def widget(self):
        return self._widget

    def read(self) -> typing.Optional[pathlib.Path]:
        text = str(self._widget.currentPath).strip()
        return pathlib.Path(text) if text else None

    def write(self, value) -> None:
        self._widget.currentPath = "" if value is None else str(value)
