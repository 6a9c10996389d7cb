"""Form fields shared by the admins of several apps."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms

from policies.durations import DurationFormatError, format_duration, parse_duration
from policies.timezones import timezone_choices


class ReadableDurationField(forms.Field):
    """Shows and accepts durations as people write them: 15 min, 4 h, 1 d 2 h."""

    widget = forms.TextInput(attrs={"placeholder": "e.g. 15 min, 4 h, 1 d 2 h", "size": 14})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, timedelta):
            return format_duration(value)
        return value

    def to_python(self, value: Any) -> timedelta | None:
        if value in self.empty_values:
            return None
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except DurationFormatError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from exc


class JSONChoicesField(forms.MultipleChoiceField):
    """A list stored in a JSONField, edited as checkboxes."""

    widget = forms.CheckboxSelectMultiple

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        return value


class TimezoneSelect(forms.Select):
    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs, choices=timezone_choices())
