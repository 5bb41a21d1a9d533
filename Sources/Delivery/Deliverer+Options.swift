extension Deliverer {
    public struct Options: Sendable {
        public var workers: Int
        /// Callback attempts in flight at once (the dispatcher's transfers).
        public var deliveryConcurrency: Int
        public var leaseSeconds: Double
        public var pollSeconds: Double
        public var hosts: HostGate.Options
        /// Callback host lookups: threads in total and per client, and each lookup's deadline.
        public var lookups: LookupBudget.Options
        public var lookupTimeoutSeconds: Double
        /// Finished requests older than this are deleted; nil keeps them.
        public var retentionSeconds: Double?
        /// The fraction of the size bound at which the oldest sync records are deleted; nil: never.
        public var syncPruneAt: Double?
        /// Runs first on each worker thread (deliveryd lowers their CPU priority there).
        public var onWorkerStart: @Sendable () -> Void
        /// WORKFCGI_NODE_NAME and WORKFCGI_NODE_TIMEOUT.
        public var nodeName: String
        public var nodeTimeoutSeconds: Double
        public init(
            workers: Int, deliveryConcurrency: Int = 256, leaseSeconds: Double, pollSeconds: Double, hosts: HostGate.Options,
            lookups: LookupBudget.Options = .init(total: 64, perClient: 8), lookupTimeoutSeconds: Double = 2,
            retentionSeconds: Double?, syncPruneAt: Double? = nil, nodeName: String = "deliveryd", nodeTimeoutSeconds: Double = 10,
            onWorkerStart: @escaping @Sendable () -> Void = {}
        ) {
            (self.nodeName, self.nodeTimeoutSeconds) = (nodeName, nodeTimeoutSeconds)
            (self.workers, self.deliveryConcurrency, self.leaseSeconds, self.pollSeconds) = (workers, deliveryConcurrency, leaseSeconds, pollSeconds)
            (self.hosts, self.lookups, self.lookupTimeoutSeconds) = (hosts, lookups, lookupTimeoutSeconds)
            (self.retentionSeconds, self.syncPruneAt, self.onWorkerStart) = (retentionSeconds, syncPruneAt, onWorkerStart)
        }
    }
}
