# The reference app's connection and channels: what examples/rails-twin ports to Rust, construct
# by construct (its module docs map each line), and what js-client/test/side-by-side.test.mjs
# compares it with.
require "global_id"

# A record identified by the GlobalID gem itself (what Active Record models include), for
# `stream_for record`: its `to_gid_param` is the gem's, id escaping included. The app and model
# names are the ones examples/rails-twin uses (`GlobalId::new(..)` in its `NotificationChannel`),
# so that both servers name the same stream; change them together.
class UserRecord
  include GlobalID::Identification

  GID_APP = "interop"
  GID_MODEL = "User"
  GlobalID.app = GID_APP

  attr_reader :name

  def self.name
    GID_MODEL
  end

  def initialize(name)
    @name = name
  end

  def id
    name
  end

  def to_s
    name
  end
end

module ApplicationCable
  # Identified by `?user=` or the `user` cookie; no user, or `banned`, is rejected.
  class Connection < ActionCable::Connection::Base
    identified_by :current_user

    def connect
      self.current_user = find_verified_user
    end

    def disconnect
      logger.info "[rails-app] Connection#disconnect current_user=#{current_user.inspect}"
    end

    private
      def find_verified_user
        user = request.params[:user].presence || cookies[:user].presence
        reject_unauthorized_connection if user.nil? || user == "banned"
        user
      end
  end

  class Channel < ActionCable::Channel::Base
  end
end

# {channel: "ChatChannel", room: R}: streams `chat:R`, announces `joined` and `left` there.
class ChatChannel < ApplicationCable::Channel
  def subscribed
    room = params[:room]
    if room.blank?
      reject
      return
    end
    stream_from "chat:#{room}"
    ActionCable.server.broadcast("chat:#{room}", { type: "joined", user: current_user })
  end

  def unsubscribed
    room = params[:room]
    ActionCable.server.broadcast("chat:#{room}", { type: "left", user: current_user }) if room.present?
  end

  def speak(data)
    ActionCable.server.broadcast("chat:#{params[:room]}", { type: "message", user: current_user, text: data["text"] })
  end

  def whoami
    transmit({ user: current_user })
  end

  # An action that raises: Rails logs it and sends nothing.
  def boom
    raise "boom"
  end
end

# {channel: "NotificationChannel"}: `stream_for current_user`, or with a truthy `gid` param
# `stream_for` the user's record (a GlobalID stream name).
class NotificationChannel < ApplicationCable::Channel
  def subscribed
    if params[:gid]
      stream_for UserRecord.new(current_user)
    else
      stream_for current_user
    end
  end

  def mark_read(data)
    transmit({ type: "marked_read", id: data["id"], user: current_user })
  end
end

# The websocket-shootout BenchmarkChannel (its Ruby ActionCable server's, unchanged), which
# cable-bench drives.
class BenchmarkChannel < ApplicationCable::Channel
  def subscribed
    stream_from "all"
  end

  def echo(data)
    transmit data
  end

  def broadcast(data)
    ActionCable.server.broadcast "all", data
    data["action"] = "broadcastResult"
    transmit data
  end
end
