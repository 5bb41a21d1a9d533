import Testing

@testable import Config

@Suite struct SettingsTests {
    @Test func defaults() throws {
        let s = try Settings(environment: ["PATH": "/usr/bin", "HOME": "/root"])
        #expect(s.runDirectory == "run")
        #expect(s.databasePath == "run/workfcgi.db")
        #expect(s.syncSocket == "run/sync.sock")
        #expect(s.syncConcurrency == 10)
        #expect(s.syncWaitMilliseconds == 2000)
        #expect(s.backlogLimit == 1000)
        #expect(s.workers == 4)
        #expect(s.retrySchedule == [1, 2, 4, 8])
        #expect(s.retryJitter == 0.25)
        #expect(s.callbackTimeoutSeconds == 10)
        #expect(s.dnsTimeoutSeconds == 2 && s.dnsLookups == 64 && s.dnsClientLookups == 8)
        #expect(s.allowPrivateCallbacks == false)
        #expect(s.callbackPorts == [80...80, 443...443, 8000...9999])
        #expect(s.durability == .full)
        #expect(s.webhookSecret == nil)
        #expect(s.webhookSecretFile == "run/webhook-secret")
        #expect(s.frontendUsers == ["www-data"])
        #expect(s.operatorAddresses == ["127.0.0.1/32", "::1/128"])
        #expect(s.maxDatabaseBytes == 4 << 30)
        #expect(try Settings(environment: ["WORKFCGI_DB_PATH": "/var/lib/w/db"]).webhookSecretFile == "/var/lib/w/webhook-secret")
        #expect(try Settings(environment: ["WORKFCGI_MAX_DB_SIZE": "512m"]).maxDatabaseBytes == 512 << 20)
        #expect(try Settings(environment: ["WORKFCGI_MAX_DB_SIZE": "2GiB"]).maxDatabaseBytes == 2 << 30)
        for bad in ["12", "1x", "-5m", "99999999t", "m"] {
            #expect(throws: ConfigError.self, "\(bad)") { try Settings(environment: ["WORKFCGI_MAX_DB_SIZE": bad]) }
        }
        #expect(s.retentionSeconds == Double(7 * 86_400))
        #expect(try Settings(environment: ["WORKFCGI_RETENTION": "forever"]).retentionSeconds == nil)
        #expect(try Settings(environment: ["WORKFCGI_RETENTION": "30d"]).retentionSeconds == Double(30 * 86_400))
    }

    @Test func readsEveryKind() throws {
        let s = try Settings(environment: [
            "WORKFCGI_RUN_DIR": "/tmp/x", "WORKFCGI_SYNC_CONCURRENCY": "3", "WORKFCGI_SYNC_WAIT": "250ms",
            "WORKFCGI_RETRY_SCHEDULE": "5s, 5m,30m,2h", "WORKFCGI_ALLOW_PRIVATE_CALLBACKS": "yes",
            "WORKFCGI_CALLBACK_PORTS": "80,9000-9100", "WORKFCGI_DURABILITY": "normal", "WORKFCGI_LEASE": "1h",
            "WORKFCGI_CALLBACK_ALLOW_CIDRS": "10.1.0.0/16, 192.168.5.0/24",
        ])
        #expect(s.databasePath == "/tmp/x/workfcgi.db")
        #expect(s.syncConcurrency == 3)
        #expect(s.syncWaitMilliseconds == 250)
        #expect(s.retrySchedule == [5, 300, 1800, 7200])
        #expect(s.allowPrivateCallbacks)
        #expect(s.callbackPorts == [80...80, 9000...9100])
        #expect(s.durability == .normal)
        #expect(s.leaseSeconds == 3600)
        #expect(s.callbackAllowCIDRs == ["10.1.0.0/16", "192.168.5.0/24"])
        #expect(try Settings(environment: ["WORKFCGI_RETRY_SCHEDULE": "none"]).retrySchedule == [])
    }

    @Test(arguments: [
        ("WORKFCGI_SYNC_CONCURRENCY", "0"),
        ("WORKFCGI_SYNC_CONCURRENCY", "ten"),
        ("WORKFCGI_SYNC_WAIT", "2"),
        ("WORKFCGI_SYNC_WAIT", "-1s"),
        ("WORKFCGI_RETRY_SCHEDULE", "1s,,2s"),
        ("WORKFCGI_RETRY_SCHEDULE", "1x"),
        ("WORKFCGI_RETRY_JITTER", "2"),
        ("WORKFCGI_ALLOW_PRIVATE_CALLBACKS", "maybe"),
        ("WORKFCGI_CALLBACK_PORTS", "70000"),
        ("WORKFCGI_CALLBACK_PORTS", "9000-8000"),
        ("WORKFCGI_DURABILITY", "paranoid"),
        ("WORKFCGI_LOG_LEVEL", "loud"),
        ("WORKFCGI_LEASE", "5s"),
        ("WORKFCGI_RETENTION", "10s"),
        ("WORKFCGI_BACKLOG_LIMT", "10"),
    ])
    func refusesNamingTheVariable(name: String, value: String) {
        #expect {
            try Settings(environment: [name: value])
        } throws: { error in
            (error as? ConfigError)?.variable == name
        }
    }

    @Test func durations() {
        #expect(Reader.parseDuration("250ms") == 0.25)
        #expect(Reader.parseDuration("1.5s") == 1.5)
        #expect(Reader.parseDuration("5m") == 300)
        #expect(Reader.parseDuration("2h") == 7200)
        #expect(Reader.parseDuration("1d") == 86_400)
        #expect(Reader.parseDuration("5") == nil)
        #expect(Reader.parseDuration("s") == nil)
    }

    @Test func everyVariableReadIsKnownAndOthersAreRefused() throws {
        // Known because the settings read them: there is no second list of names to forget one in.
        let values = ["RUN_DIR": "x", "SYNC_WAIT": "1s", "RETENTION": "1d", "MAX_DB_SIZE": "8m", "LOG_LEVEL": "debug", "NGINX_USER": "x"]
        for (name, value) in values { _ = try Settings(environment: ["WORKFCGI_\(name)": value]) }
        let error = #expect(throws: ConfigError.self) { try Settings(environment: ["WORKFCGI_SYNC_WIAT": "1s"]) }
        #expect(error?.variable == "WORKFCGI_SYNC_WIAT")
    }
}
