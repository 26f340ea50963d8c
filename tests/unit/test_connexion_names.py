"""apicrud.connexion_conventions: the names connexion's resolvers give operations."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from apicrud.connexion_conventions import applies, function_name, import_function, sanitized


def op(path, method="get", operation_id="", **spec):
    return SimpleNamespace(path=path, method=method, operation_id=operation_id, spec=spec)


SPEC = {"paths": {"/pets": {"x-openapi-router-controller": "api.pets"},
                  "/pets/{id}": {}, "/pet-shops/{id}/pets": {}},
        "x-apicrud-resolver": {"resty": "api"}}


@pytest.mark.parametrize("operation, name", [
    (op("/pets", operation_id="search"), "api.pets.search"),  # the path item's controller
    (op("/pets/{id}", operation_id="find", **{"x-openapi-router-controller": "ctl"}),
     "ctl.find"),  # the operation's own
    (op("/pets/{id}", operation_id="api.pets.get_pet"), "api.pets.get_pet"),
    (op("/pets/{id}"), "api.pets.get"),  # RestyResolver: an item's GET
    (op("/pets/{id}", "delete"), "api.pets.delete"),
    (op("/pet-shops/{id}/pets"), "api.pet_shops.pets.search"),  # a collection's GET
    (op("/pet-shops/{id}/pets", "post"), "api.pet_shops.pets.post"),
    (op("/pets", "post"), "api.pets.post"),  # the controller replaces module + path
])
def test_function_names_as_connexion_resolves_them(operation, name):
    assert function_name(operation, SPEC) == name


def test_which_operations_follow_connexion():
    resources = {"list": object()}
    assert applies(op("/pets", operation_id="search"), SPEC, resources)  # a controller
    assert applies(op("/x", operation_id="api.pets.search"), SPEC, resources)
    assert applies(op("/x"), SPEC, resources)  # no operationId, resty set
    assert not applies(op("/x"), {"paths": {}}, resources)
    assert not applies(op("/x", operation_id="list.find"), SPEC, resources)  # a resource's
    assert not applies(op("/x", operation_id="nodot"), SPEC, resources)


def test_import_function_takes_the_longest_module_then_attributes():
    assert import_function("os.path.join") is __import__("os").path.join
    assert import_function("collections.OrderedDict.fromkeys") == \
        __import__("collections").OrderedDict.fromkeys
    with pytest.raises(ImportError):
        import_function("no_such_module_here.f")
    with pytest.raises(AttributeError):
        import_function("os.no_such_function")


def test_parameter_names_as_connexion_hands_them_over():
    assert sanitized("name-prefix") == "nameprefix"
    assert sanitized("filter[kind]") == "filter_kind"
    assert sanitized("1st") == "st" and sanitized("pet_id") == "pet_id"
