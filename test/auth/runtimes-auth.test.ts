import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StreamingService } from "../../src/gen/streaming_pb.js";
import { collect, newDevice, newSession, streamAudio } from "../contract/calls.js";
import { AUDIENCE, ISSUER, type JwtIssuer, SECRET, startJwtIssuer } from "../support/jwt-issuer.js";
import { type SpawnedRuntime, spawnRuntime } from "../support/spawn-runtime.js";

// jose on Bun and Deno (spawned from their npm binaries): HS256 and a JWKS on loopback.
for (const runtime of ["bun", "deno"] as const) {
  describe(`JWT auth on ${runtime}`, () => {
    let issuer: JwtIssuer;
    let rt: SpawnedRuntime;
    beforeAll(async () => {
      issuer = await startJwtIssuer();
      rt = await spawnRuntime(runtime, {
        PTT_JWT_SECRET: SECRET,
        PTT_JWKS_URL: issuer.jwksUrl,
        PTT_JWT_ISSUER: ISSUER,
        PTT_JWT_AUDIENCE: AUDIENCE,
      });
    }, 60_000);
    afterAll(async () => {
      await rt?.stop();
      await issuer?.close();
    });

    const clients = (token?: string) => {
      const bearer: Interceptor = (next) => (req) => {
        if (token) req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      };
      return {
        connect: createClient(
          StreamingService,
          createConnectTransport({ baseUrl: rt.url, httpVersion: "1.1", interceptors: [bearer] }),
        ),
        grpc: createClient(
          StreamingService,
          createGrpcTransport({ baseUrl: rt.grpcUrl, interceptors: [bearer] }),
        ),
      };
    };

    it("Connect and gRPC: own token accepted, none UNAUTHENTICATED, another device PERMISSION_DENIED", async () => {
      const device = newDevice(runtime);
      const hs = clients(await issuer.hs256({ sub: device }));
      const es = clients(await issuer.signed("ES256", { sub: device }));
      const anon = clients();
      for (const transport of ["connect", "grpc"] as const) {
        const req = () => collect(device, newSession(), 1, "hi");
        expect((await streamAudio(hs[transport], req())).code, transport).toBeUndefined();
        expect((await streamAudio(es[transport], req())).code, transport).toBeUndefined();
        expect((await streamAudio(anon[transport], req())).code, transport).toBe(
          Code.Unauthenticated,
        );
        const other = collect(newDevice("other"), newSession(), 1, "hi");
        expect((await streamAudio(hs[transport], other)).code, transport).toBe(
          Code.PermissionDenied,
        );
      }
    });
  });
}
