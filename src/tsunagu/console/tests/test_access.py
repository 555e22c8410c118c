"""Every console page needs a login, and a user sees only the workspaces they are a member of."""

from __future__ import annotations

import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import membership_add, user_create
from tsunagu.events.selectors import source_get
from tsunagu.events.services import source_create
from tsunagu.testing.pipeline import apply_all

pytestmark = pytest.mark.django_db


def pages(slug, customer_id=1, source_id=1):
    return [
        f"/w/{slug}/",
        f"/w/{slug}/customers/",
        f"/w/{slug}/customers/{customer_id}/",
        f"/w/{slug}/sources/",
        f"/w/{slug}/sources/{source_id}/",
    ]


def test_pages_redirect_anonymous_users_to_login(workspace, source, hanako):
    client = Client()
    for url in ["/", *pages("shop-a", hanako.pk, source.pk)]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url


def test_login_form_signs_in_and_lands_on_the_first_workspace(member, workspace):
    client = Client()
    page = client.get("/login/")
    assert page.status_code == 200
    assert b'name="password"' in page.content
    bad = client.post("/login/", {"username": "alice", "password": "wrong-password"})
    assert bad.status_code == 200  # the form again, with an error
    assert "_auth_user_id" not in client.session
    response = client.post("/login/", {"username": "alice", "password": "correct-horse-battery"}, follow=True)
    assert response.redirect_chain[-1][0] == "/w/shop-a/"
    assert response.status_code == 200


def test_logout_is_a_post(client_en):
    assert client_en.get("/w/shop-a/").status_code == 200
    assert client_en.get("/logout/").status_code == 405
    assert client_en.post("/logout/").status_code == 302
    assert client_en.get("/w/shop-a/").status_code == 302


def test_root_redirects_to_the_members_workspace_not_an_earlier_one(client_en):
    from tsunagu.core.services import workspace_create

    # A workspace the user is not in, named to sort before theirs, must not be chosen.
    workspace_create(name="AAA Corp", slug="aaa", actor=SYSTEM)
    response = client_en.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/w/shop-a/"


def test_user_without_workspace_gets_an_explanation(db):
    user = user_create(username="nobody", password="correct-horse-battery")
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200
    assert b"not a member of any workspace" in response.content


def test_other_workspace_pages_answer_404(client_en, other_workspace):
    b_source = source_create(workspace=other_workspace, name="B web", channel="web", actor=SYSTEM)
    for url in pages("shop-b", source_id=b_source.pk):
        assert client_en.get(url).status_code == 404, url
    # An unknown slug answers the same as a foreign one: existence is not revealed.
    assert client_en.get("/w/no-such-shop/").status_code == 404


@pytest.fixture
def foreign(other_workspace):
    """Shop B's source and a customer of Shop B, sent through Shop B's own write key."""
    import base64

    import orjson

    from tsunagu.customers.selectors import customer_list

    b_source = source_create(workspace=other_workspace, name="B web", channel="web", actor=SYSTEM)
    response = Client().post(
        "/v1/identify",
        orjson.dumps({"userId": "b-1", "traits": {"name": "Shop B customer"}}),
        content_type="application/json",
        headers={"Authorization": "Basic " + base64.b64encode(f"{b_source.write_key}:".encode()).decode()},
    )
    assert response.status_code == 200
    apply_all(other_workspace)
    return {"source": b_source, "customer": customer_list(workspace=other_workspace, user_id="b-1").get()}


def test_ids_of_another_workspace_under_the_members_own_slug_answer_404(client_en, hanako, source, foreign):
    """The slug check passes here (Shop A is the member's): only the lookup scoped by workspace stops it."""
    b_customer, b_source = foreign["customer"], foreign["source"]
    # The member's own ids answer, so a 404 below is about the foreign id and nothing else.
    for url in pages("shop-a", hanako.pk, source.pk):
        assert client_en.get(url).status_code == 200, url
    for url in [f"/w/shop-a/customers/{b_customer.pk}/", f"/w/shop-a/sources/{b_source.pk}/"]:
        response = client_en.get(url)
        assert response.status_code == 404, url
        assert b"Shop B customer" not in response.content and b_source.write_key.encode() not in response.content
    assert client_en.post(f"/w/shop-a/sources/{b_source.pk}/rotate-key").status_code == 404
    assert source_get(workspace=foreign["source"].workspace, source_id=b_source.pk).write_key == b_source.write_key


def test_ids_of_another_workspace_under_its_slug_answer_404(client_en, foreign):
    assert client_en.get(f"/w/shop-b/customers/{foreign['customer'].pk}/").status_code == 404
    assert client_en.get(f"/w/shop-b/sources/{foreign['source'].pk}/").status_code == 404


def test_member_cannot_rotate_another_workspaces_key(client_en, other_workspace):
    b_source = source_create(workspace=other_workspace, name="B web", channel="web", actor=SYSTEM)
    before = b_source.write_key
    assert client_en.post(f"/w/shop-b/sources/{b_source.pk}/rotate-key").status_code == 404
    assert client_en.post(f"/w/shop-a/sources/{b_source.pk}/rotate-key").status_code == 404
    assert source_get(workspace=other_workspace, source_id=b_source.pk).write_key == before


def test_workspace_menu_lists_only_own_workspaces(client_en, other_workspace):
    body = client_en.get("/w/shop-a/").content.decode()
    assert "Shop A" in body
    assert "Shop B" not in body
    assert "/w/shop-b/" not in body


def test_superuser_sees_every_workspace(workspace, other_workspace):
    admin = user_create(username="root", password="correct-horse-battery", is_superuser=True)
    client = Client()
    client.force_login(admin)
    assert client.get("/w/shop-a/").status_code == 200
    assert client.get("/w/shop-b/").status_code == 200


def test_membership_in_both_workspaces_opens_both(member, workspace, other_workspace):
    membership_add(workspace=other_workspace, user=member, role="viewer", actor=SYSTEM)
    client = Client()
    client.force_login(member)
    assert client.get("/w/shop-b/").status_code == 200
    assert "Shop B" in client.get("/w/shop-a/").content.decode()
