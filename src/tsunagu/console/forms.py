"""Console forms: they check input the user can fix in the page; services still validate everything."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from tsunagu.console.labels import channel_label


class SourceForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200, strip=True)
    channel = forms.ChoiceField(label=_("Channel"))

    def __init__(self, *args: Any, channels: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["channel"].choices = [(c, channel_label(c)) for c in channels]  # type: ignore[attr-defined]
        self.fields["name"].widget.attrs.update({"autocomplete": "off", "placeholder": _("e.g. Online shop")})
