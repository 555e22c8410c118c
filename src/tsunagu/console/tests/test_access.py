"""Every console page needs a login, and a user sees only the workspaces they are a member of."""

from __future__ import annotations

import pytest
from django.test import Client

from tsunagu.core.permissions import SYSTEM
from tsunagu.core.services import membership_add, user_create
from tsunagu.events.selectors import source_get
from tsunagu.events.services import source_create

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


def test_customer_and_source_ids_of_another_workspace_answer_404(client_en, workspace, other_workspace, hanako):
    b_source = source_create(workspace=other_workspace, name="B web", channel="web", actor=SYSTEM)
    # Shop B's customer and source ids, asked for under Shop A's slug (the member's own workspace).
    assert client_en.get(f"/w/shop-a/sources/{b_source.pk}/").status_code == 404
    assert client_en.get(f"/w/shop-b/customers/{hanako.pk}/").status_code == 404


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
