"""Templates render in a sandbox: no interpreter internals, no files, bounded loops; HTML is escaped."""

from __future__ import annotations

import pytest

from tsunagu.core.errors import ValidationError
from tsunagu.messaging.render import render_fields
from tsunagu.messaging.tests.test_communications import _create

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "source",
    [
        "{{ customer.__class__ }}",
        "{{ customer.__init__.__globals__ }}",
        "{{ ''.__class__.__mro__ }}",
    ],
)
def test_reaching_for_python_internals_is_refused_on_save(workspace, source):
    with pytest.raises(ValidationError) as err:
        _create(workspace, [{"channel": "in_app", "locale": "ja", "title": source, "body": "b"}])
    assert err.value.field == "variants[0].title"


def test_python_objects_in_the_context_expose_nothing_but_their_items():
    class Secretive:
        password = "hunter2"

        def __str__(self) -> str:
            return "obj"

    out = render_fields(
        {"channel": "in_app", "title": "[{{ o.password }}][{{ o.__class__ }}][{{ o.__dict__ }}]"}, {"o": Secretive()}
    )
    assert "hunter2" not in out["title"] and "class" not in out["title"]


def test_attribute_names_of_python_objects_render_nothing():
    # A dict's methods and a string's are not reachable as properties.
    out = render_fields(
        {"channel": "in_app", "title": "[{{ customer.items }}][{{ customer.name.upper }}][{{ customer.keys }}]"},
        {"customer": {"name": "hanako"}},
    )
    assert out["title"] == "[][][]"


@pytest.mark.parametrize("source", ["{% include '/etc/passwd' %}", "{% render 'settings.py' %}"])
def test_include_and_render_find_no_file(source):
    with pytest.raises(Exception) as err:
        render_fields({"channel": "in_app", "title": source}, {})
    assert "root:" not in str(err.value)
    assert "SECRET" not in str(err.value)


def test_loops_are_bounded():
    with pytest.raises(Exception) as err:
        render_fields({"channel": "in_app", "title": "{% for i in (1..100000000) %}x{% endfor %}"}, {})
    assert "limit" in str(err.value).lower()


def test_html_fields_escape_customer_data_and_text_fields_do_not():
    ctx = {"customer": {"name": "<script>alert(1)</script>"}}
    html = render_fields({"channel": "email", "html": "<p>{{ customer.name }}</p>"}, ctx)["html"]
    text = render_fields({"channel": "email", "text": "{{ customer.name }}"}, ctx)["text"]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert text == "<script>alert(1)</script>"
