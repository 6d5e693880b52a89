import { describe, expect, it } from "vitest";
import { configFromEnv, requireGrpcPort } from "../../src/core/env-config.js";

// Bun and Deno serve gRPC on a second port (GRPC_PORT, default PORT+1): checked like PORT.

describe("configFromEnv: GRPC_PORT", () => {
  it("defaults to PORT+1, and to 0 (a free port) when PORT is 0", () => {
    expect(configFromEnv({}).grpcPort).toBe(8081);
    expect(configFromEnv({ PORT: "9000" }).grpcPort).toBe(9001);
    expect(configFromEnv({ PORT: "0" }).grpcPort).toBe(0);
    expect(configFromEnv({ PORT: "65534" }).grpcPort).toBe(65535);
  });

  it("takes any port from 0 to 65535", () => {
    for (const port of ["0", "1", "8080", "65535"]) {
      expect(configFromEnv({ GRPC_PORT: port }).grpcPort).toBe(Number(port));
    }
    expect(configFromEnv({ PORT: "65535", GRPC_PORT: "9000" })).toMatchObject({
      port: 65535,
      grpcPort: 9000,
    });
  });

  it.each(["65536", "-1", "1.5", "abc", "", " ", "0x10", "80 80"])(
    "GRPC_PORT=%j throws naming the variable",
    (bad) => {
      expect(() => configFromEnv({ GRPC_PORT: bad })).toThrow(/^GRPC_PORT: must be an integer/);
    },
  );

  it("PORT=65535 is fine for Node; Bun and Deno ask for GRPC_PORT", () => {
    const config = configFromEnv({ PORT: "65535" });
    expect(config.port).toBe(65535);
    expect(() => requireGrpcPort(config)).toThrow(
      /^GRPC_PORT: PORT\+1 \(65536\) is past 65535; set GRPC_PORT/,
    );
  });
});
