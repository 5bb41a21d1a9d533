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
        #expect(s.slowLogSeconds == nil, "the slow log is off by default")
        #expect(try Settings(environment: ["WORKFCGI_SLOW_LOG": "500ms"]).slowLogSeconds == 0.5)
        #expect(try Settings(environment: ["WORKFCGI_SLOW_LOG": "off"]).slowLogSeconds == nil)
        #expect(try Settings.effective(environment: ["WORKFCGI_SLOW_LOG": "500ms"]).map(\.line).contains("WORKFCGI_SLOW_LOG=500ms"))
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
        ("WORKFCGI_SLOW_LOG", "fast"),
        ("WORKFCGI_SLOW_LOG", "0s"),
        ("WORKFCGI_BACKLOG_LIMT", "10"),
        ("WORKFCGI_NODE_NAME", "node a"),
        ("WORKFCGI_NODE_NAME", "nöde"),
        ("WORKFCGI_NODE_NAME", "a\"}"),
        ("WORKFCGI_NODE_NAME", String(repeating: "n", count: 65)),
        ("WORKFCGI_NODE_TIMEOUT", "1s"),
        ("WORKFCGI_NODE_TIMEOUT", "10"),
        ("WORKFCGI_POLL_INTERVAL", "6s"),
    ])
    func refusesNamingTheVariable(name: String, value: String) {
        #expect {
            try Settings(environment: [name: value])
        } throws: { error in
            (error as? ConfigError)?.variable == name
        }
    }

    /// The node's name goes into /metrics labels and logs as it is: 1 to 64 of a host name's characters.
    @Test func nodeNameAndTimeout() throws {
        let s = try Settings(environment: ["WORKFCGI_NODE_NAME": "deliveryd-2.eu_west", "WORKFCGI_NODE_TIMEOUT": "3s"])
        #expect(s.nodeName == "deliveryd-2.eu_west" && s.nodeTimeoutSeconds == 3)
        let defaults = try Settings(environment: [:])
        #expect(defaults.nodeTimeoutSeconds == 10 && defaults.nodeName == Settings.hostName(), "the host name by default")
        #expect(Settings.isNodeName(String(repeating: "n", count: 64)) && !Settings.isNodeName(""))
    }

    /// The poll interval goes at most half the node timeout: a claim loop coming round less often than that is
    /// too close to what declares a node dead.
    @Test func pollIntervalAtMostHalfTheNodeTimeout() throws {
        let error = #expect(throws: ConfigError.self) { try Settings(environment: ["WORKFCGI_POLL_INTERVAL": "30s"]) }
        #expect(error?.variable == "WORKFCGI_POLL_INTERVAL")
        #expect(error?.message.contains("WORKFCGI_NODE_TIMEOUT='10s'") == true, "\(String(describing: error))")
        #expect(throws: ConfigError.self) { try Settings(environment: ["WORKFCGI_POLL_INTERVAL": "2s", "WORKFCGI_NODE_TIMEOUT": "3s"]) }
        #expect(try Settings(environment: ["WORKFCGI_POLL_INTERVAL": "5s"]).pollIntervalSeconds == 5, "exactly half")
        #expect(try Settings(environment: ["WORKFCGI_POLL_INTERVAL": "30s", "WORKFCGI_NODE_TIMEOUT": "60s"]).pollIntervalSeconds == 30)
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

/// `--check-config`'s text: settings written back as one sets them, set apart from defaults, secrets masked.
@Suite struct EffectiveSettingsTests {
    @Test func valuesInTheFormOneSetsThem() throws {
        let lines = try Settings.effective(environment: ["PATH": "/usr/bin"]).map(\.line)
        for expected in [
            "WORKFCGI_SYNC_WAIT=2s", "WORKFCGI_CALLBACK_PORTS=80,443,8000-9999", "WORKFCGI_RETENTION=7d",
            "WORKFCGI_RETRY_SCHEDULE=1s,2s,4s,8s", "WORKFCGI_MAX_DB_SIZE=4g", "WORKFCGI_CLIENT_STORAGE_LIMIT=512m",
            "WORKFCGI_RETRY_JITTER=0.25", "WORKFCGI_DB_PATH=run/workfcgi.db", "WORKFCGI_ALLOW_PRIVATE_CALLBACKS=false",
            "WORKFCGI_OPERATOR_HOSTS=localhost,127.0.0.1,[::1]", "WORKFCGI_WEBHOOK_SECRET=", "WORKFCGI_SYNC_PRUNE_AT=90%",
            "WORKFCGI_SLOW_LOG=off",
        ] {
            #expect(lines.contains(expected), "\(expected) in \(lines)")
        }
        #expect(!lines.contains { $0.contains("NGINX_USER") }, "the older name only when set")
        #expect(!lines.contains { $0.contains("Optional") || $0.contains("ClosedRange") || $0.contains(" = ") })
        // Each variable once, and every one of them: the same set an unknown-variable error lists.
        let names = lines.map { String($0.prefix { $0 != "=" }) }
        #expect(Set(names).count == names.count)
        #expect(names.count >= 40)
    }

    @Test func environmentApartFromDefaultsAndSecretsMasked() throws {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        let effective = try Settings.effective(environment: [
            "WORKFCGI_SYNC_WAIT": "250ms", "WORKFCGI_RETENTION": "forever", "WORKFCGI_WEBHOOK_SECRET": secret,
            "WORKFCGI_CALLBACK_PORTS": " 9000-9100,80", "WORKFCGI_LEASE": "90s", "WORKFCGI_MAX_DB_SIZE": "1536k",
            "WORKFCGI_RETRY_SCHEDULE": "none", "WORKFCGI_CALLBACK_TIMEOUT": "1.5s",
        ])
        let set = effective.filter(\.fromEnvironment).map(\.line)
        #expect(set == [
            "WORKFCGI_SYNC_WAIT=250ms", "WORKFCGI_RETRY_SCHEDULE=none", "WORKFCGI_CALLBACK_TIMEOUT=1500ms",
            "WORKFCGI_CALLBACK_PORTS=9000-9100,80", "WORKFCGI_LEASE=90s", "WORKFCGI_RETENTION=forever",
            "WORKFCGI_MAX_DB_SIZE=1536k", "WORKFCGI_WEBHOOK_SECRET=(masked)",
        ])
        let text = Settings.checkConfigText(effective)
        #expect(!text.contains(secret) && !text.contains("MfKQ"))
        #expect(text.hasPrefix("# set in the environment\nWORKFCGI_SYNC_WAIT=250ms\n"))
        #expect(text.contains("\n# defaults (not set)\nWORKFCGI_RUN_DIR=run\n"))
        // What the text prints is what the settings read back.
        let environment = Dictionary(uniqueKeysWithValues: effective.filter { $0.name != "WORKFCGI_WEBHOOK_SECRET" }.map { ($0.name, $0.value) })
        #expect(try Settings(environment: environment) == Settings(environment: ["WORKFCGI_SYNC_WAIT": "250ms", "WORKFCGI_RETENTION": "forever",
            "WORKFCGI_CALLBACK_PORTS": "9000-9100,80", "WORKFCGI_LEASE": "90s", "WORKFCGI_MAX_DB_SIZE": "1536k",
            "WORKFCGI_RETRY_SCHEDULE": "none", "WORKFCGI_CALLBACK_TIMEOUT": "1.5s"]))
    }

    /// A database URL may carry a password: never printed; unset means SQLite.
    @Test func databaseURLIsMasked() throws {
        let url = "postgresql://workfcgi:hunter2@db.internal/workfcgi"
        #expect(try Settings(environment: [:]).databaseURL == nil)
        #expect(try Settings(environment: ["WORKFCGI_DATABASE_URL": url]).databaseURL == url)
        let text = Settings.checkConfigText(try Settings.effective(environment: ["WORKFCGI_DATABASE_URL": url]))
        #expect(text.contains("WORKFCGI_DATABASE_URL=(masked)") && !text.contains("hunter2"))
    }

    @Test func durationsAndSizes() {
        #expect(SettingText.duration(2) == "2s" && SettingText.duration(0.25) == "250ms" && SettingText.duration(604_800) == "7d")
        #expect(SettingText.duration(90) == "90s" && SettingText.duration(3600) == "1h" && SettingText.duration(0.0005) == "0.0005s")
        #expect(SettingText.duration(0) == "0ms")
        #expect(SettingText.bytes(4 << 30) == "4g" && SettingText.bytes(1536 << 10) == "1536k" && SettingText.bytes(1000) == "1000")
    }

    @Test func stillRefusesWhatSettingsRefuses() {
        #expect(throws: ConfigError(variable: "WORKFCGI_SYNC_WAIT", message: "must be a duration like 500ms, 2s, 5m or 1h between 0.0s and 300.0s, got 'soon'")) {
            try Settings.effective(environment: ["WORKFCGI_SYNC_WAIT": "soon"])
        }
    }

    /// --check-config refuses a secret deliveryd would refuse, and never quotes it back.
    @Test func aWebhookSecretIsCheckedWithoutBeingShown() throws {
        for name in ["WORKFCGI_WEBHOOK_SECRET", "WORKFCGI_WEBHOOK_SECRET_PREVIOUS"] {
            for bad in ["whsec_bad", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2hvcnQ="] {
                let error = #expect(throws: ConfigError.self) { try Settings(environment: [name: bad]) }
                #expect(error?.variable == name)
                #expect(error.map { !"\($0)".contains(bad) } == true, "the value is not shown")
            }
        }
        #expect(try Settings(environment: ["WORKFCGI_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).webhookSecret != nil)
    }
}
