package dev.tributary.javatests;

import com.sun.net.httpserver.HttpServer;
import dev.tributary.EventOptions;
import dev.tributary.FlushResult;
import dev.tributary.HttpRequest;
import dev.tributary.HttpResponse;
import dev.tributary.HttpTransport;
import dev.tributary.Options;
import dev.tributary.Platform;
import dev.tributary.Stats;
import dev.tributary.Tributary;
import dev.tributary.TributaryConfig;
import dev.tributary.TransportException;
import java.io.File;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.GZIPInputStream;

/**
 * The library used from Java, compiled with javac: static entry points, the options
 * builder, plain Long/int types, the never-throwing recording calls, and delivery to a
 * real HTTP server on 127.0.0.1. Exits 1 on any failure.
 */
public final class JavaApiTest {
    private static int failures = 0;

    private static void check(boolean ok, String what) {
        System.out.println((ok ? "ok   " : "FAIL ") + "java: " + what);
        if (!ok) failures++;
    }

    public static void main(String[] args) throws Exception {
        List<String> bodies = Collections.synchronizedList(new ArrayList<>());
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/v1/batch", exchange -> {
            byte[] raw = exchange.getRequestBody().readAllBytes();
            String encoding = exchange.getRequestHeaders().getFirst("Content-Encoding");
            byte[] body = "gzip".equals(encoding)
                ? new GZIPInputStream(new java.io.ByteArrayInputStream(raw)).readAllBytes()
                : raw;
            bodies.add(new String(body, StandardCharsets.UTF_8));
            byte[] reply = "{\"success\":true}".getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, reply.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(reply);
            }
        });
        server.start();
        File dir = Files.createTempDirectory("tributary-java").toFile();
        String endpoint = "http://127.0.0.1:" + server.getAddress().getPort();
        try {
            Options options = new Options().flushAt(1000).flushIntervalMs(3_600_000L).logger(null);
            Tributary tributary = Tributary.setup(new Platform(dir), "java-key", endpoint, options);
            check(Tributary.getShared() == tributary, "Tributary.getShared() is the client setup made");

            Map<String, Object> properties = new HashMap<>();
            properties.put("plan", "pro");
            properties.put("seats", 3);
            tributary.register(Collections.singletonMap("source", "java"));
            tributary.track("Java Event", properties);
            tributary.track("Java Dated", Collections.emptyMap(), new EventOptions(1_700_000_000_123L, null, null));
            tributary.screen("Home");
            tributary.identify("java-user");
            long session = tributary.getSessionId();
            check(session > 0, "getSessionId() is a plain long: " + session);

            FlushResult result = tributary.flushBlocking(10_000L);
            check(result == FlushResult.Delivered.INSTANCE, "flushBlocking delivered: " + result);
            String all = String.join("\n", bodies);
            check(all.contains("\"event\":\"Java Event\""), "the event reached the server");
            check(all.contains("\"source\":\"java\""), "the super-property reached the server");
            check(all.contains("\"timestamp\":\"2023-11-14T22:13:20.123Z\""), "the per-call timestamp");
            check(all.contains("\"userId\":\"java-user\""), "identify");
            // Stats as Java sees it: plain long counters, called by name.
            Stats stats = tributary.stats();
            long uploaded = stats.getUploadedEvents();
            check(uploaded == 4L, "stats().getUploadedEvents() is a long: " + uploaded);
            check(stats.getQueuedEvents() == 0L, "stats().getQueuedEvents() == 0: " + stats);
            check(stats.getRecordedEvents() == 4L, "stats().getRecordedEvents() == 4: " + stats);
            check(stats.getLastError() == null, "no error: " + stats.getLastError());
            tributary.shutdown();
            // Never throws, even after shutdown, and the drop is counted.
            tributary.track("After shutdown");
            check(tributary.stats().getDroppedShutdown() == 1L,
                "track after shutdown did not throw and was counted: " + tributary.stats());

            // A full configuration from Java: plain int/long settings, the core's defaults.
            File dir2 = Files.createTempDirectory("tributary-java-config").toFile();
            TributaryConfig config = new TributaryConfig(endpoint, "java-key", dir2.getAbsolutePath(), 1, 3_600_000L);
            check(new TributaryConfig(endpoint, "k", "d").getFlushAt() == 20, "the core's default flushAt");
            check(new TributaryConfig(endpoint, "k", "d").getMaxQueueBytes() == 20_000_000L,
                "the core's default maxQueueBytes");
            // A transport written in Java: plain int status and long timeouts; it wraps
            // the default HttpTransport, and its first attempt fails (retried by the core).
            List<Long> timeouts = Collections.synchronizedList(new ArrayList<>());
            HttpTransport http = new HttpTransport();
            Tributary configured = new Tributary(config, null, (HttpRequest request) -> {
                long timeoutMs = request.getTimeoutMs();
                timeouts.add(timeoutMs);
                if (timeouts.size() == 1) throw new TransportException("first attempt cut by the Java transport");
                HttpResponse response = http.send(request);
                int status = response.getStatus();
                return new HttpResponse(status, response.getHeaders(), response.getBody());
            });
            configured.track("Configured From Java");
            FlushResult configuredResult = configured.flushBlocking(10_000L);
            check(configuredResult == FlushResult.Delivered.INSTANCE, "flushAt=1 from Java delivered: " + configuredResult);
            check(configured.stats().getUploadedEvents() == 1L, "one event uploaded: " + configured.stats());
            check(timeouts.size() == 2 && timeouts.get(0) > 0L, "the Java transport was called twice: " + timeouts);
            check(configured.stats().getRetries() == 1L, "its failure was retried: " + configured.stats());
            configured.close();

            boolean refused;
            try {
                Tributary.setup(new Platform(dir), "java-key", endpoint, new Options().flushAt(0));
                refused = false;
            } catch (IllegalArgumentException e) {
                refused = e.getMessage().contains("flushAt");
            }
            check(refused, "an impossible option is refused at setup with its name");
        } finally {
            server.stop(0);
        }
        System.out.println("java: " + (failures == 0 ? "all passed" : failures + " failed"));
        System.exit(failures == 0 ? 0 : 1);
    }
}
