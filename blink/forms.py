from __future__ import annotations

from typing import Any

from django import forms

from clients.models import Client, Company


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(required=False)
    client = forms.ModelChoiceField(queryset=Client.objects.none(), required=False,
                                    empty_label="All clients")
    actor = forms.CharField(required=False, max_length=150, label="Who")
    user = forms.CharField(required=False, max_length=200, label="User")
    since = forms.DateField(required=False, label="From",
                            widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To",
                            widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, company: Company, actions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["client"].queryset = Client.objects.filter(company=company)  # type: ignore[attr-defined]
        self.fields["action"].choices = [("", "All actions")] + [(a, a) for a in actions]  # type: ignore[attr-defined]
