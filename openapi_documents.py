"""The OpenAPI 3.1 document of a JSON API declared with flask-openapi3: the paths and tags of
its blueprint's routes, the JSON Schema of every model they name, and how it authenticates.
The site's own API (api_contract.py) and the Mastodon client API (mastodon_contract.py) are
both described this way."""

from collections.abc import Callable, Mapping

from flask_openapi3 import APIBlueprint, APISpec, Info
from pydantic import BaseModel

REF = "#/components/schemas/{model}"


def reference(models: dict[str, type[BaseModel]], model: type[BaseModel]) -> dict:
    """A `$ref` to `model`, which `models` (the document's schemas) now holds."""
    models[model.__name__] = model
    return {"$ref": REF.format(model=model.__name__)}


def build(
    bp: APIBlueprint,
    info: Info,
    models: Mapping[str, type[BaseModel]],
    security_schemes: dict,
    security: list[dict],
    is_response: Callable[[type[BaseModel]], bool] = lambda model: True,
) -> dict:
    """The document of `bp`'s routes, with `models` as its components. A model is described
    as the API writes it when `is_response`, else as it reads it."""
    spec = APISpec(openapi="3.1.0", info=info, paths=bp.paths, tags=bp.tags).model_dump(
        mode="json", by_alias=True, exclude_unset=True, warnings=False
    )
    spec["security"] = security
    spec["components"] = {
        "schemas": component_schemas(models, is_response),
        "securitySchemes": security_schemes,
    }
    return spec


def component_schemas(
    models: Mapping[str, type[BaseModel]], is_response: Callable[[type[BaseModel]], bool]
) -> dict:
    """The JSON Schema of each of `models`, with the models they contain."""
    found: dict = {}
    for name, model in sorted(models.items()):
        response = is_response(model)
        schema = model.model_json_schema(
            ref_template=REF, mode="serialization" if response else "validation"
        )
        found.update(schema.pop("$defs", {}))
        found[name] = schema
    return found
