"""An admin sub-application, mounted at /admin, with a route that fails."""
from fastapi import FastAPI

admin = FastAPI(title="Conduit admin")


@admin.get("/jobs/{job_id}")
async def job(job_id: int):
    return {"job": job_id, "state": "done"}


@admin.post("/jobs/{job_id}/retry")
async def retry(job_id: int):
    raise RuntimeError("retry queue is not configured for job %d" % job_id)
