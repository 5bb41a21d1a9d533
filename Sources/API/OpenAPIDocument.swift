import JSON

/// The API's OpenAPI 3.1 description, served at /openapi.json and rendered at /docs. Kept in the binary so an
/// installed workfcgi needs no files beside it; a test validates it (openapi-spec-validator) and schemathesis
/// holds the live stack to it. What code already knows is not typed in again: the request bodies are built
/// from `Limits` (`OpenAPIDocument+Requests.swift`), the version is the build's; the rest is the text below.
enum OpenAPIDocument {
    /// The whole document for the build `version` (`BuildInfo.versionLine`'s form).
    /// `handlers`: the names installed now, listed in the `HandlerName` schema.
    static func value(version: String, handlers: [String] = []) -> JSONValue {
        guard case .object(var document) = try! JSONValue.parse(Array(text.utf8)),
            case .object(var info)? = document["info"], case .object(var components)? = document["components"],
            case .object(var schemas)? = components["schemas"]
        else { preconditionFailure("the static OpenAPI text is an object with info and components.schemas") }
        info["version"] = .string(version)
        for (name, schema) in requestSchemas { schemas[name] = schema }
        schemas["HandlerName"] = handlerName(installed: handlers)
        components["schemas"] = .object(schemas)
        document["info"] = .object(info)
        document["components"] = .object(components)
        var value = JSONValue.object(document)
        addHandlerResponses(&value)
        return value
    }

    /// Everything but the request bodies; /sync and /async refer to `SyncRequest` and `AsyncRequest`.
    static let text = #"""
{
 "openapi": "3.1.0",
 "info": {
  "title": "workfcgi",
  "version": "set from the build (OpenAPIDocument.value)",
  "description": "The same unit of work two ways: POST /sync answers inline (bounded by a semaphore and a wait), POST /async answers 202 at once and POSTs the signed result (Standard Webhooks) to callback_url, with retries. Every error has the shape of the Error schema. nginx in front rate-limits per client address (429 rate_limited with Retry-After)."
 },
 "servers": [
  {
   "url": "http://127.0.0.1:8080"
  }
 ],
 "paths": {
  "/sync": {
   "post": {
    "operationId": "postSync",
    "summary": "Run the work now and answer with its result",
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/SyncRequest"
       }
      }
     }
    },
    "responses": {
     "200": {
      "description": "computed",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/SyncResult"
        }
       }
      }
     },
     "503": {
      "description": "all sync slots busy for WORKFCGI_SYNC_WAIT (sync_saturated), the client's storage share used (client_storage_full), with Retry-After; or workfcgi down",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/async": {
   "post": {
    "operationId": "postAsync",
    "summary": "Accept the work; the result is POSTed to callback_url",
    "parameters": [
     {
      "name": "Idempotency-Key",
      "in": "header",
      "required": false,
      "description": "1 to 255 printable ASCII characters; a repeat within 24 h replays the first 202",
      "schema": {
       "type": "string",
       "minLength": 1,
       "maxLength": 255
      }
     }
    ],
    "requestBody": {
     "required": true,
     "content": {
      "application/json": {
       "schema": {
        "$ref": "#/components/schemas/AsyncRequest"
       }
      }
     }
    },
    "responses": {
     "202": {
      "description": "committed to the job store (or replayed for an Idempotency-Key)",
      "headers": {
       "Location": {
        "description": "where to follow the job",
        "schema": {
         "type": "string"
        }
       }
      },
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Accepted"
        }
       }
      }
     },
     "503": {
      "description": "backlog_full, client_backlog_full, client_storage_full, storage_full or store_unavailable (Retry-After)",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Error"
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/requests": {
   "get": {
    "operationId": "listRequests",
    "summary": "Stored requests, newest first (operators)",
    "parameters": [
     {
      "name": "mode",
      "in": "query",
      "schema": {
       "enum": [
        "sync",
        "async"
       ]
      }
     },
     {
      "name": "status",
      "in": "query",
      "schema": {
       "enum": [
        "pending",
        "processing",
        "delivering",
        "completed",
        "failed"
       ]
      }
     },
     {
      "name": "limit",
      "in": "query",
      "schema": {
       "type": "integer",
       "minimum": 1,
       "maximum": 500,
       "default": 50
      }
     },
     {
      "name": "before",
      "in": "query",
      "description": "next_before of the previous page",
      "schema": {
       "$ref": "#/components/schemas/RequestID"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "a page",
      "content": {
       "application/json": {
        "schema": {
         "type": "object",
         "required": [
          "requests",
          "next_before"
         ],
         "properties": {
          "requests": {
           "type": "array",
           "items": {
            "$ref": "#/components/schemas/RequestSummary"
           }
          },
          "next_before": {
           "type": [
            "string",
            "null"
           ]
          }
         }
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/requests/{id}": {
   "get": {
    "operationId": "getRequest",
    "summary": "One request: input, result, delivery trace",
    "parameters": [
     {
      "$ref": "#/components/parameters/RequestPathID"
     }
    ],
    "responses": {
     "200": {
      "description": "the request",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/RequestDetail"
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/requests/{id}/redeliver": {
   "post": {
    "operationId": "redeliver",
    "summary": "Send a finished async job's callback again (operators)",
    "parameters": [
     {
      "$ref": "#/components/parameters/RequestPathID"
     }
    ],
    "responses": {
     "202": {
      "description": "queued: a fresh attempt series, the same webhook-id",
      "headers": {
       "Location": {
        "description": "where to follow the job",
        "schema": {
         "type": "string"
        }
       }
      },
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Accepted"
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/requests/redeliver": {
   "post": {
    "operationId": "redeliverFailed",
    "summary": "Send every failed callback in a time window again, optionally one host's; a bounded bite per call, idempotent (operators)",
    "parameters": [
     {
      "name": "since",
      "in": "query",
      "description": "start of the window (jobs created at or after): ISO 8601 or unix ms; required",
      "schema": {
       "type": "string"
      }
     },
     {
      "name": "until",
      "in": "query",
      "description": "end of the window (created before): ISO 8601 or unix ms; default now",
      "schema": {
       "type": "string"
      }
     },
     {
      "name": "host",
      "in": "query",
      "description": "only jobs whose callback_url names this host (no scheme, no port)",
      "schema": {
       "type": "string"
      }
     },
     {
      "name": "limit",
      "in": "query",
      "description": "most jobs requeued by this call, 1 to 1000; default 100",
      "schema": {
       "type": "integer"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "the jobs queued again (a fresh attempt series each, the same webhook-id); more: call again for the next bite",
      "content": {
       "application/json": {
        "schema": {
         "type": "object",
         "required": [
          "requeued",
          "request_ids",
          "more",
          "since",
          "until",
          "host"
         ],
         "properties": {
          "requeued": {
           "type": "integer"
          },
          "request_ids": {
           "type": "array",
           "items": {
            "$ref": "#/components/schemas/RequestID"
           }
          },
          "more": {
           "type": "boolean"
          },
          "since": {
           "type": "string"
          },
          "until": {
           "type": "string"
          },
          "host": {
           "type": [
            "string",
            "null"
           ]
          }
         }
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/ui/redeliver": {
   "post": {
    "operationId": "operatorRedeliverFailed",
    "summary": "The overview's redeliver-failed form (operators; the form's token, same origin)",
    "requestBody": {
     "required": true,
     "content": {
      "application/x-www-form-urlencoded": {
       "schema": {
        "type": "object",
        "properties": {
         "token": {
          "type": "string"
         },
         "window": {
          "type": "integer"
         },
         "host": {
          "type": "string"
         }
        },
        "required": [
         "token",
         "window"
        ]
       }
      }
     }
    },
    "responses": {
     "303": {
      "description": "queued; back to /ui with how many"
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/healthz": {
   "get": {
    "operationId": "health",
    "summary": "Liveness and state at a glance",
    "responses": {
     "200": {
      "description": "database reachable",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Health"
        }
       }
      }
     },
     "503": {
      "description": "database unreachable, or workfcgi down",
      "content": {
       "application/json": {
        "schema": {
         "oneOf": [
          {
           "$ref": "#/components/schemas/Health"
          },
          {
           "$ref": "#/components/schemas/Error"
          }
         ]
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/metrics": {
   "get": {
    "operationId": "metrics",
    "summary": "Prometheus metrics (operators)",
    "responses": {
     "200": {
      "description": "text exposition format",
      "content": {
       "text/plain": {
        "schema": {
         "type": "string"
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/status": {
   "get": {
    "operationId": "status",
    "summary": "What is happening now, as JSON for scripts (operators)",
    "description": "This workfcgi's /sync computations and FastCGI pools, the jobs deliveryd holds (leased now; the first 50), the backlog against its limit, the oldest pending job and the storage against its bound. Ages are milliseconds at `at`.",
    "responses": {
     "200": {
      "description": "the state now",
      "content": {
       "application/json": {
        "schema": {
         "$ref": "#/components/schemas/Status"
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/ui": {
   "get": {
    "operationId": "operatorPage",
    "summary": "The operator page: state at a glance, recent requests (operators)",
    "parameters": [
     {
      "name": "mode",
      "in": "query",
      "schema": {
       "type": "string"
      }
     },
     {
      "name": "status",
      "in": "query",
      "schema": {
       "type": "string"
      }
     }
    ],
    "responses": {
     "200": {
      "description": "HTML, no scripts; refreshes itself",
      "content": {
       "text/html": {
        "schema": {
         "type": "string"
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/ui/requests/{id}": {
   "get": {
    "operationId": "operatorRequest",
    "summary": "One request's page: input, result, delivery trace, redeliver button (operators)",
    "parameters": [
     {
      "$ref": "#/components/parameters/RequestPathID"
     }
    ],
    "responses": {
     "200": {
      "description": "HTML",
      "content": {
       "text/html": {
        "schema": {
         "type": "string"
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/ui/requests/{id}/redeliver": {
   "post": {
    "operationId": "operatorRedeliver",
    "summary": "The page's redeliver button (operators; the form's token, same origin)",
    "parameters": [
     {
      "$ref": "#/components/parameters/RequestPathID"
     }
    ],
    "requestBody": {
     "required": true,
     "content": {
      "application/x-www-form-urlencoded": {
       "schema": {
        "type": "object",
        "properties": {
         "token": {
          "type": "string"
         }
        },
        "required": [
         "token"
        ]
       }
      }
     }
    },
    "responses": {
     "303": {
      "description": "queued; back to the request's page",
      "headers": {
       "Location": {
        "description": "where to follow the job",
        "schema": {
         "type": "string"
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/openapi.json": {
   "get": {
    "operationId": "openapi",
    "summary": "This document",
    "responses": {
     "200": {
      "description": "OpenAPI 3.1",
      "content": {
       "application/json": {
        "schema": {
         "type": "object"
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  },
  "/docs": {
   "get": {
    "operationId": "docs",
    "summary": "This document as a page",
    "responses": {
     "200": {
      "description": "HTML, no scripts",
      "content": {
       "text/html": {
        "schema": {
         "type": "string"
        }
       }
      }
     },
     "default": {
      "$ref": "#/components/responses/Error"
     }
    }
   }
  }
 },
 "components": {
  "schemas": {
   "RequestID": {
    "type": "string",
    "description": "UUIDv7",
    "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
   },
   "Error": {
    "type": "object",
    "required": [
     "error"
    ],
    "properties": {
     "error": {
      "type": "object",
      "required": [
       "code",
       "message"
      ],
      "properties": {
       "code": {
        "type": "string",
        "description": "stable, machine-readable"
       },
       "message": {
        "type": "string"
       },
       "field": {
        "type": "string",
        "description": "the field or header at fault, when there is one"
       }
      }
     }
    }
   },
   "SyncResult": {
    "type": "object",
    "required": [
     "request_id",
     "op",
     "status",
     "result",
     "duration_ms"
    ],
    "properties": {
     "request_id": {
      "$ref": "#/components/schemas/RequestID"
     },
     "op": {
      "enum": [
       "hash",
       "text",
       "report",
       "compute"
      ]
     },
     "status": {
      "const": "completed"
     },
     "result": {
      "type": "object"
     },
     "duration_ms": {
      "type": "number"
     }
    }
   },
   "Accepted": {
    "type": "object",
    "required": [
     "request_id",
     "status",
     "message"
    ],
    "properties": {
     "request_id": {
      "$ref": "#/components/schemas/RequestID"
     },
     "status": {
      "enum": [
       "pending",
       "delivering"
      ]
     },
     "message": {
      "type": "string"
     }
    }
   },
   "RequestSummary": {
    "type": "object",
    "required": [
     "request_id",
     "mode",
     "op",
     "status",
     "attempts",
     "created_at",
     "completed_at",
     "duration_ms"
    ],
    "properties": {
     "request_id": {
      "$ref": "#/components/schemas/RequestID"
     },
     "mode": {
      "enum": [
       "sync",
       "async"
      ]
     },
     "op": {
      "enum": [
       "hash",
       "text",
       "report",
       "compute"
      ]
     },
     "status": {
      "enum": [
       "pending",
       "processing",
       "delivering",
       "completed",
       "failed"
      ]
     },
     "attempts": {
      "type": "integer",
      "minimum": 0
     },
     "created_at": {
      "type": "string"
     },
     "completed_at": {
      "type": [
       "string",
       "null"
      ],
      "description": "ISO 8601, UTC, milliseconds"
     },
     "duration_ms": {
      "type": [
       "number",
       "null"
      ]
     }
    }
   },
   "RequestDetail": {
    "allOf": [
     {
      "$ref": "#/components/schemas/RequestSummary"
     },
     {
      "type": "object",
      "required": [
       "input",
       "result",
       "error",
       "started_at"
      ],
      "properties": {
       "input": {
        "description": "the request body as received"
       },
       "result": {
        "type": [
         "object",
         "null"
        ]
       },
       "error": {
        "type": [
         "string",
         "null"
        ]
       },
       "started_at": {
        "type": [
         "string",
         "null"
        ],
        "description": "ISO 8601, UTC, milliseconds"
       },
       "callback_url": {
        "type": [
         "string",
         "null"
        ]
       },
       "delivery": {
        "type": "object",
        "required": [
         "status",
         "webhook_id",
         "delivered_at",
         "next_attempt_at",
         "error",
         "attempts"
        ],
        "properties": {
         "status": {
          "enum": [
           "pending",
           "retrying",
           "delivered",
           "failed"
          ]
         },
         "webhook_id": {
          "$ref": "#/components/schemas/RequestID"
         },
         "delivered_at": {
          "type": [
           "string",
           "null"
          ],
          "description": "ISO 8601, UTC, milliseconds"
         },
         "next_attempt_at": {
          "type": [
           "string",
           "null"
          ],
          "description": "ISO 8601, UTC, milliseconds"
         },
         "error": {
          "type": [
           "string",
           "null"
          ]
         },
         "attempts": {
          "type": "array",
          "items": {
           "$ref": "#/components/schemas/Attempt"
          }
         }
        }
       }
      }
     }
    ]
   },
   "Attempt": {
    "type": "object",
    "required": [
     "n",
     "at",
     "duration_ms",
     "http_status",
     "error",
     "next_attempt_at"
    ],
    "properties": {
     "n": {
      "type": "integer"
     },
     "at": {
      "type": "string"
     },
     "duration_ms": {
      "type": "number"
     },
     "http_status": {
      "type": [
       "integer",
       "null"
      ]
     },
     "error": {
      "type": [
       "string",
       "null"
      ]
     },
     "next_attempt_at": {
      "type": [
       "string",
       "null"
      ],
      "description": "ISO 8601, UTC, milliseconds"
     }
    }
   },
   "Status": {
    "type": "object",
    "required": [
     "at",
     "sync",
     "pools",
     "deliveryd",
     "backlog",
     "storage"
    ],
    "properties": {
     "at": {
      "type": "string",
      "description": "ISO 8601, UTC, milliseconds"
     },
     "sync": {
      "type": "object",
      "required": [
       "in_flight",
       "slots",
       "slots_full_total",
       "computations"
      ],
      "properties": {
       "in_flight": {
        "type": "integer",
        "minimum": 0
       },
       "slots": {
        "type": "integer",
        "minimum": 0
       },
       "slots_full_total": {
        "type": "integer",
        "minimum": 0,
        "description": "/sync requests that found every slot busy on arrival since start (PHP-FPM's max children reached)"
       },
       "computations": {
        "type": "array",
        "items": {
         "type": "object",
         "required": [
          "request_id",
          "op",
          "age_ms",
          "started_at"
         ],
         "properties": {
          "request_id": {
           "type": "string"
          },
          "op": {
           "type": "string"
          },
          "handler": {
           "type": "string"
          },
          "age_ms": {
           "type": "number",
           "minimum": 0
          },
          "started_at": {
           "type": "string"
          }
         }
        }
       }
      }
     },
     "pools": {
      "type": "array",
      "items": {
       "type": "object",
       "required": [
        "pool",
        "threads",
        "busy",
        "queued",
        "queue_limit"
       ],
       "properties": {
        "pool": {
         "enum": [
          "sync",
          "api"
         ]
        },
        "threads": {
         "type": "integer",
         "minimum": 0
        },
        "busy": {
         "type": "integer",
         "minimum": 0
        },
        "queued": {
         "type": [
          "integer",
          "null"
         ],
         "description": "connections waiting in the kernel's accept queue (sock_diag); null when it cannot be read"
        },
        "queue_limit": {
         "type": [
          "integer",
          "null"
         ]
        }
       }
      }
     },
     "deliveryd": {
      "type": "object",
      "required": [
       "running",
       "jobs_in_hand",
       "listed_at_most"
      ],
      "properties": {
       "running": {
        "type": [
         "boolean",
         "null"
        ]
       },
       "listed_at_most": {
        "type": "integer",
        "minimum": 0
       },
       "jobs_in_hand": {
        "type": [
         "array",
         "null"
        ],
        "items": {
         "type": "object",
         "required": [
          "request_id",
          "op",
          "status",
          "attempts",
          "age_ms",
          "claimed_at",
          "lease_until"
         ],
         "properties": {
          "request_id": {
           "type": "string"
          },
          "op": {
           "type": "string"
          },
          "status": {
           "enum": [
            "processing",
            "delivering"
           ]
          },
          "attempts": {
           "type": "integer",
           "minimum": 0
          },
          "age_ms": {
           "type": "number",
           "minimum": 0
          },
          "claimed_at": {
           "type": "string",
           "description": "when the node claimed it (heartbeats renew its lease, not this)"
          },
          "lease_until": {
           "type": "string"
          },
          "node": {
           "type": [
            "string",
            "null"
           ],
           "description": "the name of the deliveryd node holding it; null when that node's row is gone"
          }
         }
        }
       },
       "nodes": {
        "type": [
         "array",
         "null"
        ],
        "description": "every deliveryd node (the latest start of each name); null when the database did not answer",
        "items": {
         "$ref": "#/components/schemas/DeliverydNode"
        }
       }
      }
     },
     "backlog": {
      "type": "object",
      "required": [
       "jobs",
       "limit",
       "oldest_pending_age_ms"
      ],
      "properties": {
       "jobs": {
        "type": [
         "integer",
         "null"
        ]
       },
       "limit": {
        "type": "integer",
        "minimum": 0
       },
       "oldest_pending_age_ms": {
        "type": [
         "number",
         "null"
        ]
       }
      }
     },
     "storage": {
      "type": [
       "object",
       "null"
      ],
      "properties": {
       "state": {
        "type": [
         "string",
         "null"
        ]
       },
       "used_bytes": {
        "type": "number"
       },
       "reserved_bytes": {
        "type": "number"
       },
       "bound_bytes": {
        "type": [
         "number",
         "null"
        ]
       }
      }
     }
    }
   },
   "Health": {
    "type": "object",
    "required": [
     "status",
     "db_connected",
     "sync_in_flight",
     "sync_concurrency",
     "uptime_seconds"
    ],
    "properties": {
     "status": {
      "enum": [
       "ok",
       "degraded",
       "unavailable"
      ],
      "description": "degraded: deliveryd's heartbeat is stale, or the store is full"
     },
     "db_connected": {
      "type": "boolean"
     },
     "queue_depth": {
      "type": [
       "integer",
       "null"
      ]
     },
     "active_workers": {
      "type": [
       "integer",
       "null"
      ]
     },
     "sync_in_flight": {
      "type": "integer"
     },
     "sync_concurrency": {
      "type": "integer"
     },
     "uptime_seconds": {
      "type": "number"
     },
     "storage": {
      "type": "object",
      "description": "the database against its size bound (WORKFCGI_MAX_DB_SIZE); full: new jobs are refused",
      "properties": {
       "state": {
        "enum": [
         "ok",
         "nearly_full",
         "full"
        ]
       },
       "used_bytes": {
        "type": "integer"
       },
       "reserved_bytes": {
        "type": "integer"
       },
       "bound_bytes": {
        "type": [
         "integer",
         "null"
        ]
       }
      }
     },
     "deliveryd": {
      "type": "object",
      "properties": {
       "running": {
        "type": "boolean"
       },
       "heartbeat_age_ms": {
        "type": [
         "integer",
         "null"
        ],
        "description": "since the freshest heartbeat of a node not stopped; null when none ran or every one stopped cleanly"
       },
       "open_circuits": {
        "type": [
         "integer",
         "null"
        ],
        "description": "callback hosts whose circuit breaker is open or half-open; null (unknown) while deliveryd is not running"
       },
       "circuits": {
        "type": [
         "array",
         "null"
        ],
        "description": "those hosts in detail, summed over the alive nodes; shown to operators only (WORKFCGI_OPERATOR_ADDRESSES, WORKFCGI_OPERATOR_HOSTS); null (unknown) while no node is running",
        "items": {
         "type": "object"
        }
       },
       "nodes_alive": {
        "type": "integer",
        "minimum": 0,
        "description": "deliveryd nodes whose heartbeat is younger than WORKFCGI_NODE_TIMEOUT; the service is degraded when none is"
       },
       "nodes": {
        "type": "array",
        "description": "every deliveryd node (the latest start of each name); shown to operators only",
        "items": {
         "$ref": "#/components/schemas/DeliverydNode"
        }
       }
      }
     }
    }
   },
   "DeliverydNode": {
    "type": "object",
    "required": [
     "name",
     "id",
     "pid",
     "state",
     "heartbeat_age_ms",
     "jobs_in_hand",
     "open_circuits",
     "started_at"
    ],
    "properties": {
     "name": {
      "type": "string",
      "description": "WORKFCGI_NODE_NAME"
     },
     "id": {
      "type": "string",
      "description": "this start's id, the owner of the leases it takes"
     },
     "pid": {
      "type": "integer"
     },
     "state": {
      "enum": [
       "alive",
       "stopped",
       "dead"
      ],
      "description": "dead: not stopped cleanly and no heartbeat for WORKFCGI_NODE_TIMEOUT (its jobs are rescued)"
     },
     "heartbeat_age_ms": {
      "type": "integer",
      "minimum": 0,
      "description": "since its last heartbeat, or its clean stop"
     },
     "jobs_in_hand": {
      "type": "integer",
      "minimum": 0,
      "description": "jobs it is working on; 0 unless alive"
     },
     "open_circuits": {
      "type": "integer",
      "minimum": 0,
      "description": "its own open or half-open circuit breakers (each node keeps its own); 0 unless alive"
     },
     "started_at": {
      "type": "string"
     }
    }
   }
  },
  "responses": {
   "Error": {
    "description": "refused; error.code says why (README, Errors)",
    "content": {
     "application/json": {
      "schema": {
       "$ref": "#/components/schemas/Error"
      }
     }
    }
   }
  },
  "parameters": {
   "RequestPathID": {
    "name": "id",
    "in": "path",
    "required": true,
    "schema": {
     "type": "string"
    }
   }
  }
 }
}
"""#
}
