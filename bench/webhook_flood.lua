-- wrk script: posts the signed fixture with a unique X-GitHub-Delivery per request.
-- Arguments: <body file> <X-Hub-Signature-256 value> <run tag>.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local counter = 0
local prefix

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = "issues"
  wrk.headers["X-Hub-Signature-256"] = args[2]
  prefix = "wrk-" .. args[3] .. "-" .. thread_number .. "-"
end

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. counter
  return wrk.format()
end
