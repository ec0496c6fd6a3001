"""A parameter form generated from a protocol's own declaration (labctl.params.Parameter).

One row per parameter: its name and unit, an editor for its kind (text for numbers and lists,
check box for bool, combo box for choices), the default filled in, and a tooltip with its doc,
limits and safe-operating-area link. Every edit is validated at once with Parameter.validate;
`validate()` then checks the whole set with labctl.engine.prepare (limits, the station's safe
operating area, the protocol's own checks such as the chip size), so a refused value is named
with its limit before anything runs.
"""
from __future__ import annotations

import json
from typing import Any

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QLineEdit, QSizePolicy, QVBoxLayout, QWidget

from labctl.engine import Protocol, prepare
from labctl.params import Parameter, ParameterError
from labctl.safety import SafetyError

ERROR_STYLE = "QLineEdit { border: 1px solid #d62728; background: #fff0f0; }"


def format_value(value: Any) -> str:
    """A parameter value as the form shows it (numbers with %g, lists comma-separated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(float(v)) if isinstance(v, (int, float)) else str(v) for v in value)
    return str(value)


def parse_text(param: Parameter, text: str) -> Any:
    """The typed value of an editor's text, or ParameterError naming the parameter."""
    text = text.strip()
    if param.kind == "str":
        return text
    if not text:
        raise ParameterError(f"{param.name} needs a value")
    try:
        if param.kind == "floats":
            value = json.loads(text if text.startswith("[") else f"[{text}]")
        else:
            value = json.loads(text)
    except json.JSONDecodeError:
        what = "a list of numbers, e.g. 2e-5, 5e-5" if param.kind == "floats" else "a number"
        raise ParameterError(f"{param.name} must be {what}, got {text!r}") from None
    return value


def tooltip(param: Parameter) -> str:
    parts = [param.doc or param.name]
    unit = f" {param.unit}" if param.unit else ""
    if param.minimum is not None:
        parts.append(f"minimum {param.minimum:g}{unit}")
    if param.maximum is not None:
        parts.append(f"maximum {param.maximum:g}{unit}")
    if param.choices:
        parts.append("one of " + ", ".join(param.choices))
    if param.soa:
        parts.append(f"bounded by the station's safe operating area ({param.soa})")
    parts.append(f"default {format_value(param.default)}{unit}")
    return "\n".join(parts)


class ParameterForm(QWidget):
    """The editable parameters of one protocol."""

    changed = pyqtSignal()

    def __init__(self, protocol: Protocol, parent: QWidget | None = None):
        super().__init__(parent)
        self.protocol = protocol
        self.editors: dict[str, QCheckBox | QComboBox | QLineEdit] = {}
        self.field_errors: dict[str, str] = {}
        layout = QFormLayout()
        layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setVerticalSpacing(3)
        for param in protocol.parameters:
            editor = self._editor(param)
            editor.setToolTip(tooltip(param))
            editor.setObjectName(f"param_{param.name}")
            label = QLabel(f"{param.name}" + (f" ({param.unit})" if param.unit else ""))
            label.setToolTip(tooltip(param))
            layout.addRow(label, editor)
            self.editors[param.name] = editor
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addLayout(layout)
        if not protocol.parameters:
            outer.addWidget(QLabel("(no parameters)"))

    def _editor(self, param: Parameter) -> QCheckBox | QComboBox | QLineEdit:
        if param.kind == "bool":
            box = QCheckBox()
            box.setChecked(bool(param.default))
            box.toggled.connect(lambda _=None, p=param: self._edited(p))
            return box
        if param.kind == "str" and param.choices:
            combo = QComboBox()
            combo.addItems(list(param.choices))
            combo.setCurrentText(str(param.default))
            combo.currentTextChanged.connect(lambda _=None, p=param: self._edited(p))
            return combo
        edit = QLineEdit(format_value(param.default))
        edit.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        edit.textChanged.connect(lambda _=None, p=param: self._edited(p))
        return edit

    # -- values -------------------------------------------------------------------------------------
    def raw_value(self, param: Parameter) -> Any:
        editor = self.editors[param.name]
        if isinstance(editor, QCheckBox):
            return editor.isChecked()
        if isinstance(editor, QComboBox):
            return editor.currentText()
        return parse_text(param, editor.text())

    def set_value(self, name: str, value: Any) -> None:
        """Put a value in a field (e.g. from --set); it is validated like typed text."""
        params = {p.name: p for p in self.protocol.parameters}
        if name not in params:
            raise ParameterError(f"{self.protocol.name} has no parameter {name!r} "
                                 f"(parameters: {', '.join(params) or 'none'})")
        editor = self.editors[name]
        if isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QComboBox):
            editor.setCurrentText(str(value))
        else:
            editor.setText(format_value(value) if not isinstance(value, str) else value)

    def _edited(self, param: Parameter) -> None:
        try:
            param.validate(self.raw_value(param))
            self.field_errors.pop(param.name, None)
        except ParameterError as exc:
            self.field_errors[param.name] = str(exc)
        editor = self.editors[param.name]
        if isinstance(editor, QLineEdit):
            editor.setStyleSheet(ERROR_STYLE if param.name in self.field_errors else "")
        self.changed.emit()

    def values(self) -> dict[str, Any]:
        """The values that differ from the defaults (raises ParameterError for unparsable text)."""
        values = {}
        for param in self.protocol.parameters:
            value = self.raw_value(param)
            if value != param.default:
                values[param.name] = value
        return values

    def validate(self, config) -> tuple[dict[str, Any] | None, list[str]]:
        """(values to run with, []) when every value is valid on the station `config`, else
        (None, messages): each message names the parameter and the limit it breaks."""
        messages = []
        for param in self.protocol.parameters:
            try:
                param.validate(self.raw_value(param))
            except ParameterError as exc:
                messages.append(str(exc))
        if messages:
            return None, messages
        values = self.values()
        try:
            prepare(self.protocol, values, config)
        except (ParameterError, SafetyError) as exc:
            return None, [str(exc)]
        return values, []
