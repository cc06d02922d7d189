"""The emulator speaks the published API: checked with plain httpx, not our client."""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pixeldojo_cli.emulator import Emulator

from conftest import TEST_KEY

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}


def submit(emulator: Emulator, body: dict[str, Any], model: str = "flux-dev") -> httpx.Response:
    return httpx.post(f"{emulator.base_url}/models/{model}/run", json=body, headers=AUTH)


def wait_done(emulator: Emulator, job_id: str) -> dict[str, Any]:
    for _ in range(200):
        job: dict[str, Any] = httpx.get(f"{emulator.base_url}/jobs/{job_id}", headers=AUTH).json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.02)
    raise AssertionError("job never finished")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    crc = struct.unpack(">I", data[16 + length : 20 + length])[0]
    assert crc == zlib.crc32(data[12 : 16 + length])
    return width, height


def test_catalogue_has_32_image_and_4_video_models(emulator: Emulator) -> None:
    body = httpx.get(f"{emulator.base_url}/models").json()
    kinds = [m["modality"] for m in body["models"]]
    assert (kinds.count("image"), kinds.count("video"), body["total"]) == (32, 4, 36)
    video = httpx.get(f"{emulator.base_url}/models", params={"modality": "video"}).json()
    assert {m["modality"] for m in video["models"]} == {"video"}


def test_schema_endpoint_answers_a_json_schema(emulator: Emulator) -> None:
    schema = httpx.get(f"{emulator.base_url}/models/flux-dev/schema").json()["schema"]
    assert schema["type"] == "object" and "prompt" in schema["properties"]
    assert "prompt" in schema["required"]


class SteppedClock:
    """The emulator's `time` module, but its wall clock moves only when told:
    a job's states follow the clock, not how quickly a busy machine polls."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_job_goes_pending_processing_completed_with_a_valid_png(
    make_emulator: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixeldojo_cli.emulator import server

    clock = SteppedClock()
    monkeypatch.setattr(server, "time", clock)
    emulator = make_emulator(latency=0.4)
    answer = submit(emulator, {"prompt": "a fox", "aspect_ratio": "16:9"})
    assert answer.status_code == 200
    job_id = answer.json()["jobId"]
    seen = []
    for _ in range(100):
        status = httpx.get(f"{emulator.base_url}/jobs/{job_id}", headers=AUTH).json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == "completed":
            break
        clock.now += 0.02
    assert seen == ["pending", "processing", "completed"]
    job = wait_done(emulator, job_id)
    assert job["expiresAt"]
    [url] = job["output"]["images"]
    image = httpx.get(url)  # no key: the file origin never needs one
    width, height = png_size(image.content)
    assert width > height  # 16:9


def test_same_prompt_and_seed_give_the_same_picture(emulator: Emulator) -> None:
    first = wait_done(emulator, submit(emulator, {"prompt": "x", "seed": 7}).json()["jobId"])
    again = wait_done(emulator, submit(emulator, {"prompt": "x", "seed": 7}).json()["jobId"])
    other = wait_done(emulator, submit(emulator, {"prompt": "x", "seed": 8}).json()["jobId"])
    get = lambda job: httpx.get(job["output"]["images"][0]).content  # noqa: E731
    assert get(first) == get(again) != get(other)


def test_missing_or_wrong_key_is_401_unauthorized(make_emulator: Callable[..., Emulator]) -> None:
    emulator = make_emulator(key="only-this-key")
    no_key = httpx.get(f"{emulator.base_url}/jobs")
    wrong = httpx.get(f"{emulator.base_url}/jobs", headers=AUTH)
    assert (no_key.status_code, wrong.status_code) == (401, 401)
    assert wrong.json()["error"]["code"] == "unauthorized"


def test_credits_run_out_with_402_insufficient_credits(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(credits=1.5)
    assert submit(emulator, {"prompt": "a"}).status_code == 200
    answer = submit(emulator, {"prompt": "b"})
    assert answer.status_code == 402
    assert answer.json()["error"]["code"] == "insufficient_credits"


def test_bad_json_and_bad_inputs_are_400(emulator: Emulator) -> None:
    bad_json = httpx.post(f"{emulator.base_url}/models/flux-dev/run", content=b"{", headers=AUTH)
    bad_input = submit(emulator, {"prompt": "a", "aspect_ratio": "7:3"})
    assert bad_json.json()["error"]["code"] == "invalid_json"
    assert bad_input.json()["error"]["code"] == "validation_error"
    assert submit(emulator, {}, model="no-such-model").status_code == 404


def test_rate_limit_answers_429_with_retry_after(make_emulator: Callable[..., Emulator]) -> None:
    emulator = make_emulator(rate_limit=3)
    answers = [httpx.get(f"{emulator.base_url}/jobs", headers=AUTH) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["error"]["code"] == "rate_limit_exceeded"
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert answers[0].headers["X-RateLimit-Limit"] == "3"


def test_outputs_expire_with_410(make_emulator: Callable[..., Emulator]) -> None:
    emulator = make_emulator(latency=0.05, ttl=0.3)
    job = wait_done(emulator, submit(emulator, {"prompt": "a"}).json()["jobId"])
    time.sleep(0.4)
    assert httpx.get(job["output"]["images"][0]).status_code == 410
    gone = httpx.get(f"{emulator.base_url}/jobs/{job['jobId']}", headers=AUTH)
    assert (gone.status_code, gone.json()["error"]["code"]) == (410, "expired")


def test_prompt_with_fail_marker_fails_the_job(emulator: Emulator) -> None:
    job = wait_done(emulator, submit(emulator, {"prompt": "boom #fail"}).json()["jobId"])
    assert job["status"] == "failed" and job["error"]


def test_webhook_is_posted_on_completion_and_on_replay(
    emulator: Emulator, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    job_id = submit(emulator, {"prompt": "a", "webhook_url": url}).json()["jobId"]
    wait_done(emulator, job_id)
    for _ in range(100):
        if received:
            break
        time.sleep(0.02)
    replay = httpx.post(f"{emulator.base_url}/jobs/{job_id}/webhook", headers=AUTH)
    assert replay.status_code == 200
    assert [r["replay"] for r in received] == [False, True]
    assert received[0]["job"]["status"] == "completed"


def test_5xx_burst_fault_then_normal(make_emulator: Callable[..., Emulator]) -> None:
    emulator = make_emulator()
    emulator.add_fault("status", status=503, count=2)
    codes = [httpx.get(f"{emulator.base_url}/jobs", headers=AUTH).status_code for _ in range(3)]
    assert codes == [503, 503, 200]


def test_a_padded_output_is_a_valid_png_of_the_size_asked_and_resumes(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(latency=0.05, output_bytes=3 * 2**20 + 7)
    job = wait_done(emulator, submit(emulator, {"prompt": "big"}).json()["jobId"])
    url = job["output"]["images"][0]
    whole = httpx.get(url).content
    assert len(whole) >= 3 * 2**20
    png_size(whole)
    chunks, at = [], 8
    while at < len(whole):  # every chunk's CRC is right
        length = struct.unpack(">I", whole[at : at + 4])[0]
        kind_and_data = whole[at + 4 : at + 8 + length]
        assert struct.unpack(">I", whole[at + 8 + length : at + 12 + length])[0] == zlib.crc32(
            kind_and_data
        )
        chunks.append(kind_and_data[:4])
        at += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"pdJo" in chunks
    rest = httpx.get(url, headers={"Range": "bytes=1000-"})
    assert rest.status_code == 206 and rest.content == whole[1000:]


def test_a_prompt_can_make_a_job_report_any_status(make_emulator: Callable[..., Emulator]) -> None:
    emulator = make_emulator(latency=0.05)
    seen = {}
    for word in ("canceled", "weird", "succeeded"):
        job_id = submit(emulator, {"prompt": f"a cat #status={word}"}).json()["jobId"]
        time.sleep(0.1)
        seen[word] = httpx.get(f"{emulator.base_url}/jobs/{job_id}", headers=AUTH).json()
    assert {word: job["status"] for word, job in seen.items()} == {
        "canceled": "canceled",
        "weird": "weird",
        "succeeded": "succeeded",
    }
    assert "output" not in seen["canceled"] and "output" not in seen["weird"]
    assert seen["succeeded"]["output"]["images"]  # a synonym of completed keeps its outputs


def test_set_status_changes_what_a_job_reports(make_emulator: Callable[..., Emulator]) -> None:
    emulator = make_emulator(latency=0.05)
    job_id = submit(emulator, {"prompt": "a cat"}).json()["jobId"]
    assert wait_done(emulator, job_id)["status"] == "completed"
    emulator.set_status(job_id, "cancelled")
    listed = httpx.get(f"{emulator.base_url}/jobs", headers=AUTH).json()["jobs"]
    assert [j["status"] for j in listed if j["jobId"] == job_id] == ["cancelled"]
    emulator.set_status(job_id, None)
    assert wait_done(emulator, job_id)["status"] == "completed"


def test_the_emulator_refuses_what_the_schema_refuses(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator()
    url = "https://example.com/a.png"
    for body, model in (
        ({"prompt": ""}, "flux-dev"),
        ({"prompt": "x", "image_urls": [url] * 11}, "flux-kontext-pro"),
        ({"prompt": "x", "image_urls": ["not a url"]}, "flux-kontext-pro"),
        ({"prompt": "x", "lora_url": "no scheme"}, "flux-dev"),
    ):
        answer = submit(emulator, body, model)
        assert answer.status_code == 400, body
    assert not emulator.jobs


def test_gzip_and_stall_faults(make_emulator: Callable[..., Emulator]) -> None:
    import gzip

    emulator = make_emulator(latency=0.05)
    job = wait_done(emulator, submit(emulator, {"prompt": "a cat"}).json()["jobId"])
    url = job["output"]["images"][0]
    emulator.add_fault("gzip", target="files", count=1)
    with httpx.stream("GET", url, headers={"Accept-Encoding": "identity"}) as response:
        assert response.headers["content-encoding"] == "gzip"
        raw = b"".join(response.iter_raw())
    assert len(raw) == int(response.headers["content-length"])
    assert gzip.decompress(raw) == emulator.output_file(job["jobId"], 1)
    emulator.add_fault("stall", target="files", after_bytes=10, delay=0.3, count=1)
    started = time.monotonic()
    with httpx.stream("GET", url) as response:
        assert response.status_code == 200
        try:
            body = b"".join(response.iter_raw())
        except httpx.RemoteProtocolError:
            body = b"cut"
    assert time.monotonic() - started >= 0.3 and body != emulator.output_file(job["jobId"], 1)
