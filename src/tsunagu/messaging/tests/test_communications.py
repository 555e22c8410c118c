"""Communications: variants checked on save (fields, Liquid syntax, unknown filters, with variant and line),
undefined variables reported against a sample customer, every save an immutable version."""

from __future__ import annotations

import pytest

from tsunagu.core.errors import PermissionDenied, ValidationError
from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import apikey_create
from tsunagu.messaging.models import CommunicationVersion
from tsunagu.messaging.services import communication_create, communication_update
from tsunagu.messaging.tests.helpers import identified, inapp_communication

pytestmark = pytest.mark.django_db


def _create(workspace, variants, key="c1"):
    return communication_create(
        workspace=workspace, key=key, name="C", topic="service", variants=variants, actor=SYSTEM
    )


def test_a_syntax_error_is_refused_naming_the_variant_field_and_line(workspace):
    with pytest.raises(ValidationError) as err:
        _create(
            workspace,
            [
                {"channel": "in_app", "locale": "ja", "title": "ok", "body": "line one\nline two {% if %}"},
            ],
        )
    assert err.value.field == "variants[0].body"
    assert "variant in_app/ja" in err.value.message and "line 2" in err.value.message


def test_an_unknown_filter_is_refused_with_its_name_and_line(workspace):
    with pytest.raises(ValidationError) as err:
        _create(
            workspace,
            [
                {"channel": "in_app", "locale": "en", "title": "{{ customer.name }}", "body": "a\nb\n{{ x | shout }}"},
            ],
        )
    assert err.value.field == "variants[0].body"
    assert "unknown filter 'shout'" in err.value.message and "line 3" in err.value.message


def test_unknown_fields_missing_fields_and_duplicates_are_refused(workspace):
    cases = [
        ([{"channel": "in_app", "locale": "ja", "title": "t", "body": "b", "subject": "x"}], "variants[0].subject"),
        ([{"channel": "in_app", "locale": "ja", "url": "https://x"}], "variants[0].title"),
        ([{"channel": "fax", "locale": "ja"}], "variants[0].channel"),
        (
            [{"channel": "in_app", "locale": "ja", "title": "t"}, {"channel": "in_app", "locale": "ja", "title": "u"}],
            "variants[1].locale",
        ),
        ([], "variants"),
    ]
    for variants, field in cases:
        with pytest.raises(ValidationError) as err:
            _create(workspace, variants)
        assert err.value.field == field, (variants, err.value.message)


def test_undefined_variables_are_warnings_against_the_sample_customer(workspace, send):
    identified(send, workspace, name="山田 花子", plan="gold")
    _comm, warnings = _create(
        workspace,
        [
            {
                "channel": "in_app",
                "locale": "ja",
                "title": "{{ customer.traits.plan }}",
                "body": "{{ customer.traits.no_such_trait }}",
            },
        ],
    )
    assert len(warnings) == 1
    assert "customer.traits.no_such_trait" in warnings[0] and "field body" in warnings[0]


def test_every_save_is_a_new_immutable_version(workspace):
    comm = inapp_communication(workspace)
    first = list(CommunicationVersion.objects.get(communication=comm, number=1).variants)
    version, _ = communication_update(
        communication=comm,
        actor=SYSTEM,
        name="Notice v2",
        variants=[{"channel": "in_app", "locale": "ja", "title": "新しい {{ customer.name }}", "body": "b"}],
    )
    assert version.number == 2 and comm.current_version == 2 and comm.name == "Notice v2"
    assert CommunicationVersion.objects.get(communication=comm, number=1).variants == first
    assert [v.number for v in comm.versions.order_by("number")] == [1, 2]


def test_a_viewer_cannot_create_or_change(workspace):
    viewer, _ = apikey_create(workspace=workspace, name="v", role="viewer", actor=SYSTEM)
    with pytest.raises(PermissionDenied):
        communication_create(
            workspace=workspace,
            key="x",
            name="X",
            topic="service",
            actor=viewer,
            variants=[{"channel": "in_app", "locale": "ja", "title": "t", "body": "b"}],
        )
    comm = inapp_communication(workspace)
    with pytest.raises(PermissionDenied):
        communication_update(communication=comm, actor=viewer, variants=[{"channel": "in_app", "title": "t"}])
    assert comm.versions.count() == 1


def test_keys_and_topics_are_checked(workspace):
    ok = [{"channel": "in_app", "locale": "ja", "title": "t", "body": "b"}]
    for key, topic, field in [("Bad Key", "service", "key"), ("fine", "spam", "topic"), ("", "service", "key")]:
        with pytest.raises(ValidationError) as err:
            communication_create(workspace=workspace, key=key, name="n", topic=topic, variants=ok, actor=SYSTEM)
        assert err.value.field == field
    _create(workspace, ok, key="dup")
    with pytest.raises(ValidationError) as err:
        _create(workspace, ok, key="dup")
    assert err.value.field == "key"
