"""One APIRouter per resource; `api.app.create_app` mounts them under /api/v1."""
