#!/usr/bin/python3
"""Independent gRPC interop client for ptt-edge, built on grpcio (Debian's python3-grpcio).

It speaks plaintext HTTP/2 (h2c) to HOST:PORT, runs one fixed push-to-talk scenario and prints
ONE JSON object on stdout with everything it observed. It asserts nothing: the TypeScript test
(test/interop/grpcio.test.ts) checks the values against docs/protocol.md.

The message module `streaming_pb2` is generated at test time with Debian's protoc (>= 3.15, for
proto3 `optional`) and never committed:

    protoc --python_out=DIR -Iproto proto/streaming.proto
    /usr/bin/python3 test/interop/grpcio_client.py --pb-dir DIR 127.0.0.1:PORT HARDWARE_ID \
        [--interrupt-hardware-id OTHER_ID]

The interrupt steps (k, l, m) need a long reply, so start the server with an echo delay
(PTT_ECHO_DELAY_MS=20). They run on a second device (OTHER_ID, default HARDWARE_ID + "-irq") so
that barge-in on that device never touches the replies of the first.

DIR may also come from PTT_PB_DIR or PYTHONPATH. RPCs are called through grpcio's generic
multicallables, so no grpc_tools / *_pb2_grpc module is needed.

Exit status: 0 when the scenario ran (whatever the server answered), non-zero only on a crash
(bad arguments, missing modules, server unreachable).
"""

import argparse
import base64
import json
import os
import sys
import threading
import time
import uuid

SERVICE = "/streaming.StreamingService/"

PHASE_COLLECT = 1
PHASE_COMMIT = 2
PHASE_CANCEL = 3


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("target", help="HOST:PORT of the plaintext gRPC server")
    p.add_argument("hardware_id", help="hardware_id to use for every request")
    p.add_argument("--pb-dir", default=os.environ.get("PTT_PB_DIR"),
                   help="directory holding the generated streaming_pb2.py")
    p.add_argument("--interrupt-hardware-id", default=None,
                   help="second device for the interrupt steps (default: HARDWARE_ID-irq)")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline of each call, seconds")
    p.add_argument("--connect-timeout", type=float, default=15.0,
                   help="how long to wait for the channel to become ready, seconds")
    return p.parse_args()


def metadata_dict(md):
    """grpcio metadata (sequence of (key, value)) -> dict; repeated keys become lists."""
    out = {}
    for key, value in md or ():
        if isinstance(value, bytes):  # "-bin" keys
            value = base64.b64encode(value).decode("ascii")
        if key in out:
            prev = out[key]
            out[key] = (prev if isinstance(prev, list) else [prev]) + [value]
        else:
            out[key] = value
    return out


class Client:
    def __init__(self, channel, pb, hardware_id, timeout):
        from google.protobuf import json_format

        self._json_format = json_format
        self.pb = pb
        self.hardware_id = hardware_id
        self.timeout = timeout
        self._stream_audio = channel.unary_stream(
            SERVICE + "StreamAudio",
            request_serializer=pb.StreamRequest.SerializeToString,
            response_deserializer=pb.StreamResponse.FromString,
        )
        self._interrupt = channel.unary_unary(
            SERVICE + "InterruptSession",
            request_serializer=pb.InterruptRequest.SerializeToString,
            response_deserializer=pb.InterruptResponse.FromString,
        )
        self._welcome = channel.unary_stream(
            SERVICE + "GenerateWelcomeAudio",
            request_serializer=pb.WelcomeRequest.SerializeToString,
            response_deserializer=pb.WelcomeResponse.FromString,
        )
        self._usage = channel.unary_unary(
            SERVICE + "ReportUsage",
            request_serializer=pb.UsageRequest.SerializeToString,
            response_deserializer=pb.UsageResponse.FromString,
        )

    def _to_dict(self, msg):
        return self._json_format.MessageToDict(
            msg, preserving_proto_field_name=True, including_default_value_fields=True
        )

    def _frame(self, msg):
        """A oneof response as {"<field name>": value}; {} when no field is set."""
        field = msg.WhichOneof("content")
        if field is None:
            return {}
        value = getattr(msg, field)
        if isinstance(value, bytes):
            value = base64.b64encode(value).decode("ascii")
        elif hasattr(value, "DESCRIPTOR"):
            value = self._to_dict(value)
        return {field: value}

    def _server_stream(self, multicallable, request, request_summary, on_frame=None):
        import grpc

        result = {"request": request_summary, "frames": []}
        call = multicallable(request, timeout=self.timeout)
        try:
            for msg in call:
                frame = self._frame(msg)
                result["frames"].append(frame)
                if on_frame is not None:
                    on_frame(frame)
        except grpc.RpcError:
            pass  # the call object itself carries code/details/metadata
        result["ended_at"] = time.monotonic()
        result["code"] = call.code().name
        result["details"] = call.details() or ""
        result["initial_metadata"] = metadata_dict(call.initial_metadata())
        result["trailing_metadata"] = metadata_dict(call.trailing_metadata())
        return result

    def _unary(self, multicallable, request, request_summary):
        import grpc

        result = {"request": request_summary, "response": None}
        try:
            response, call = multicallable.with_call(request, timeout=self.timeout)
            result["response"] = self._to_dict(response)
        except grpc.RpcError as err:
            call = err  # a failed unary call raises an RpcError that is also a grpc.Call
        result["code"] = call.code().name
        result["details"] = call.details() or ""
        result["initial_metadata"] = metadata_dict(call.initial_metadata())
        result["trailing_metadata"] = metadata_dict(call.trailing_metadata())
        return result

    def stream_audio(self, session_id, phase, chunk_seq=0, chunk_text=None, prompt="",
                     on_frame=None):
        req = self.pb.StreamRequest(
            hardware_id=self.hardware_id,
            session_id=session_id,
            phase=phase,
            chunk_seq=chunk_seq,
            prompt=prompt,
        )
        if chunk_text is not None:
            req.chunk_text = chunk_text
        summary = {
            "session_id": session_id,
            "phase": phase,
            "chunk_seq": chunk_seq,
            "chunk_text": chunk_text,
            "prompt": prompt,
        }
        return self._server_stream(self._stream_audio, req, summary, on_frame)

    def interrupt(self):
        req = self.pb.InterruptRequest(hardware_id=self.hardware_id)
        return self._unary(self._interrupt, req, {"hardware_id": self.hardware_id})

    def welcome(self, session_id):
        req = self.pb.WelcomeRequest(text="hi", session_id=session_id, voice="", language="en")
        return self._server_stream(self._welcome, req, {"session_id": session_id})

    def usage(self, session_id):
        req = self.pb.UsageRequest(
            hardware_id=self.hardware_id, session_id=session_id, source="interop",
            input_tokens=1, output_tokens=1, model="none",
        )
        return self._unary(self._usage, req, {"session_id": session_id})


def step(steps, name, fn):
    """Run one step; an unexpected (non-gRPC) exception is recorded, not fatal."""
    try:
        steps[name] = fn()
    except Exception as exc:  # noqa: BLE001 - reported to the TS test, which fails on it
        steps[name] = {"exception": "%s: %s" % (type(exc).__name__, exc)}


def interrupt_running_reply(client, session_id, prompt):
    """COMMIT a long reply in a thread; after its first text_chunk, InterruptSession from here.

    Returns (reply, interrupt) step records. The reply also gets frames_after_interrupt (frames
    that arrived after the interrupt answer came back) and ms_interrupt_to_end (interrupt answer
    to the end of the reply call); the interrupt gets reply_frames_before_call.
    """
    first_text = threading.Event()
    arrivals = []  # monotonic arrival time of each reply frame
    box = {}

    def on_frame(frame):
        arrivals.append(time.monotonic())
        if "text_chunk" in frame:
            first_text.set()

    def commit():
        try:
            box["reply"] = client.stream_audio(session_id, PHASE_COMMIT, 0, None, prompt, on_frame)
        except Exception as exc:  # noqa: BLE001 - recorded, the TS test fails on it
            box["reply"] = {"exception": "%s: %s" % (type(exc).__name__, exc)}
        finally:
            first_text.set()  # never leave the main thread waiting on a crashed call

    worker = threading.Thread(target=commit, name="commit-long-reply", daemon=True)
    worker.start()
    if not first_text.wait(client.timeout):
        interrupt = {"exception": "no text_chunk within %ss" % client.timeout}
        answered_at = None
    else:
        frames_before = len(arrivals)
        interrupt = client.interrupt()
        answered_at = time.monotonic()
        interrupt["reply_frames_before_call"] = frames_before
    worker.join(client.timeout + 5)
    reply = box.get("reply") or {"exception": "the COMMIT call did not end"}
    if "exception" not in reply and answered_at is not None:
        reply["frames_after_interrupt"] = sum(1 for t in arrivals if t > answered_at)
        reply["ms_interrupt_to_end"] = round((reply["ended_at"] - answered_at) * 1000, 1)
    return reply, interrupt


def run(client, irq_client):
    steps = {}
    s1 = str(uuid.uuid4())  # main session: collect, collect, commit
    s2 = str(uuid.uuid4())  # cancelled session
    s3 = str(uuid.uuid4())  # welcome / usage

    # a. first chunk
    step(steps, "a_collect", lambda: client.stream_audio(s1, PHASE_COLLECT, 1, "hello "))
    # b. the same seq again
    step(steps, "b_collect_duplicate", lambda: client.stream_audio(s1, PHASE_COLLECT, 1, "hello "))
    # c. second chunk, then COMMIT with an empty prompt
    step(steps, "c_collect", lambda: client.stream_audio(s1, PHASE_COLLECT, 2, "world"))
    step(steps, "c_commit", lambda: client.stream_audio(s1, PHASE_COMMIT, 0, None, ""))
    # d. COMMIT the same session again
    step(steps, "d_commit_again", lambda: client.stream_audio(s1, PHASE_COMMIT, 0, None, ""))
    # e. COLLECT on the committed session
    step(steps, "e_collect_sealed", lambda: client.stream_audio(s1, PHASE_COLLECT, 3, "late"))
    # f. malformed session id
    step(steps, "f_bad_session_id",
         lambda: client.stream_audio("not-a-uuid", PHASE_COLLECT, 1, "x"))
    # g. COLLECT, CANCEL, then COMMIT a fresh session
    step(steps, "g_collect", lambda: client.stream_audio(s2, PHASE_COLLECT, 1, "never sent"))
    step(steps, "g_cancel", lambda: client.stream_audio(s2, PHASE_CANCEL))
    step(steps, "g_commit_cancelled", lambda: client.stream_audio(s2, PHASE_COMMIT, 0, None, ""))
    # h. InterruptSession for the device
    step(steps, "h_interrupt", client.interrupt)
    # i. GenerateWelcomeAudio is declared but not implemented
    step(steps, "i_welcome", lambda: client.welcome(s3))
    # j. ReportUsage likewise (contract section 1)
    step(steps, "j_usage", lambda: client.usage(s3))

    # k. on the second device: COMMIT a long reply on a fresh session (no COLLECT, so no
    #    barge-in), InterruptSession after its first text_chunk
    s4 = str(uuid.uuid4())
    s5 = str(uuid.uuid4())
    try:
        reply, interrupt = interrupt_running_reply(irq_client, s4, "a. " * 100)
    except Exception as exc:  # noqa: BLE001
        reply = interrupt = {"exception": "%s: %s" % (type(exc).__name__, exc)}
    steps["k_commit_interrupted"] = reply
    steps["k_interrupt"] = interrupt
    # l. the interrupt does not block the next turn: COLLECT, then COMMIT a fresh session
    step(steps, "l_collect", lambda: irq_client.stream_audio(s5, PHASE_COLLECT, 1, "next"))
    step(steps, "l_commit", lambda: irq_client.stream_audio(s5, PHASE_COMMIT, 0, None, ""))
    # m. the interrupted session is still committed: a late COLLECT is refused
    step(steps, "m_collect_interrupted",
         lambda: irq_client.stream_audio(s4, PHASE_COLLECT, 1, "late"))

    for record in steps.values():  # monotonic stamps mean nothing outside this process
        record.pop("ended_at", None)
    return {
        "hardware_id": client.hardware_id,
        "interrupt_hardware_id": irq_client.hardware_id,
        "sessions": {"main": s1, "cancelled": s2, "other": s3, "interrupted": s4, "next": s5},
        "steps": steps,
    }


def main():
    args = parse_args()
    if args.pb_dir:
        sys.path.insert(0, args.pb_dir)
    import grpc
    import google.protobuf
    import streaming_pb2

    channel = grpc.insecure_channel(args.target)
    try:
        grpc.channel_ready_future(channel).result(timeout=args.connect_timeout)
    except grpc.FutureTimeoutError:
        sys.stderr.write("grpcio_client: %s not ready after %ss\n" % (args.target, args.connect_timeout))
        return 2
    client = Client(channel, streaming_pb2, args.hardware_id, args.timeout)
    irq_client = Client(channel, streaming_pb2,
                        args.interrupt_hardware_id or args.hardware_id + "-irq", args.timeout)
    out = run(client, irq_client)
    out["client"] = {
        "grpcio": grpc.__version__,
        "protobuf": google.protobuf.__version__,
        "python": sys.version.split()[0],
    }
    channel.close()
    json.dump(out, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
